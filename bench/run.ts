/* npm run bench: tlsd side by side with native runs, strace and gdb, in
 * one run, rounds interleaved, medians and ratios (these machines are
 * noisy: absolute times drift, ratios within a run hold).
 *
 *   BENCH_ROUNDS (default 5): rounds of each workload
 *   BENCH_ONLY: a comma-separated subset of tls,churn,attach,kinds,eintr,ledger,records,inject,shim,syscalls,engine
 *   BENCH_EXITS (default 10,000,000): threads the records part makes in one program
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { TlsdClient, type RuleRequest } from '../clients/client.js';
import { daemonEntry, packageRoot } from '../daemon/paths.js';

const run = promisify(execFile);
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const only = process.env.BENCH_ONLY?.split(',');
const wanted = (workload: string) => !only || only.includes(workload);
const fixture = (name: string) => path.join(packageRoot, 'test', 'fixtures', 'build', name);
const benchProgram = (name: string) => path.join(packageRoot, 'bench', 'build', name);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

/** A program that prints "done NS": the time it measured itself. */
const selfTimed = (stdout: string) => Number(stdout.match(/^done (\d+)$/m)?.[1]) / 1e6;

async function native(argv: string[]): Promise<number> {
  return selfTimed((await run(argv[0]!, argv.slice(1), { maxBuffer: 1 << 24 })).stdout);
}

async function underStrace(argv: string[]): Promise<number> {
  return selfTimed((await run('strace', ['-f', '-o', '/dev/null', ...argv], { maxBuffer: 1 << 24 })).stdout);
}

/** Under bench/floor-tracer.c: the same ptrace options, nothing done at
 * any stop but the restart; sleeping between stops, or first polling for
 * the next one as long as tlsd-tracer does. */
const TRACER_POLL_US = '20'; // native/tracer/main.c, SPIN_NS
async function underFloor(argv: string[], polling: boolean): Promise<number> {
  const options = polling ? ['--poll-us', TRACER_POLL_US] : [];
  return selfTimed((await run(benchProgram('floor-tracer'), [...options, ...argv], { maxBuffer: 1 << 24 })).stdout);
}

async function underTlsd(client: TlsdClient, argv: string[], syscalls?: RuleRequest[], killWithDaemon = false, shim = false): Promise<number> {
  return (await spawnedUnderTlsd(client, argv, syscalls, killWithDaemon, shim)).ms;
}

async function spawnedUnderTlsd(client: TlsdClient, argv: string[], syscalls?: RuleRequest[], killWithDaemon = false, shim = false) {
  const p = await client.spawn({
    argv, ...(syscalls ? { syscalls } : {}), ...(killWithDaemon ? { killWithDaemon } : {}), ...(shim ? { shim: { mode: 'thread-pointer' as const } } : {}),
  });
  for (;;) {
    const q = await client.process(p.pid);
    if (q.state === 'exited') return { pid: p.pid, ms: selfTimed(readFileSync(p.stdout!, 'utf8')) };
    await sleep(20);
  }
}

/** Lines of the running fixture, as they come. */
function linesOf(child: ChildProcess): string[] {
  const lines: string[] = [];
  let rest = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => {
    const parts = (rest + s).split('\n');
    rest = parts.pop()!;
    lines.push(...parts);
  });
  return lines;
}

const tracerOf = (pid: number) => Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/^TracerPid:\s*(\d+)/m)?.[1]);

async function until(check: () => boolean): Promise<void> {
  while (!check()) await sleep(10);
}

/** A daemon on a socket in `dir`, its records in `dir`/state unless
 * `args` say otherwise. */
async function startDaemon(dir: string, args: string[] = []): Promise<{ daemon: ChildProcess; client: TlsdClient }> {
  const socket = path.join(dir, 'tlsd.sock');
  const daemon = spawn(process.execPath, [daemonEntry, '--socket', socket, '--state-dir', path.join(dir, 'state'), '--log-level', 'warn', ...args], { stdio: 'inherit' });
  const client = new TlsdClient({ socket });
  for (let i = 0; ; i++) {
    try {
      await client.health();
      return { daemon, client };
    } catch (e) {
      if (i > 200) throw e;
      await sleep(50);
    }
  }
}

/** A fixture program, once it printed "ready PID" (every thread it starts
 * has then reported). */
async function readyProcess(name: string, args: string[]): Promise<ChildProcess> {
  const child = spawn(fixture(name), args, { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => { out = (out + s).slice(-200); });
  while (!/ready \d+/.test(out)) {
    if (child.exitCode !== null) throw new Error(`${name} ${args.join(' ')} exited with ${child.exitCode}`);
    await sleep(50);
  }
  return child;
}

/** One variable in every thread: gdb (which stops the program) against
 * tlsd's REST read (which does not), the first read after an attach (it
 * learns the modules) and later ones. */
async function tlsReads(client: TlsdClient, n: number): Promise<Row[]> {
  const target = await readyProcess('glibc-dynamic/tls', [String(n - 1)]); // n - 1 workers and main
  const workload = `read tls_exe in all ${n} threads`;
  const gdbRow: Row = { workload, variant: "gdb -batch -ex 'thread apply all print tls_exe'", ms: [] };
  const firstRow: Row = { workload, variant: 'tlsd GET …/tls/symbols/tls_exe, first after attach', ms: [], baseline: gdbRow.variant, faster: true };
  const laterRow: Row = { workload, variant: 'tlsd GET …/tls/symbols/tls_exe', ms: [], baseline: gdbRow.variant, faster: true };
  try {
    for (let i = 0; i < rounds; i++) {
      let t0 = performance.now();
      await run('gdb', ['-batch', '-nx', '-p', String(target.pid), '-ex', 'thread apply all print tls_exe'], { maxBuffer: 1 << 26 });
      gdbRow.ms.push(performance.now() - t0);
      await client.attach(target.pid!);
      for (let k = 0; k < 6; k++) {
        t0 = performance.now();
        const r = await client.readTls(target.pid!, 'tls_exe');
        (k === 0 ? firstRow : laterRow).ms.push(performance.now() - t0);
        if (r.values.length !== n || r.values.some((v) => v.state !== 'ok')) throw new Error(`read ${r.values.length} values, not ${n} good ones`);
      }
      await client.detach(target.pid!);
    }
  } finally {
    target.kill('SIGKILL');
  }
  return [gdbRow, firstRow, laterRow];
}

/** `faster`: say how many times faster than the baseline, not a ratio. */
type Row = { workload: string; variant: string; ms: number[]; baseline?: string; extra?: string; faster?: boolean };

function table(rows: Row[]): string {
  const lines = ['| workload | run | median | ratio |', '| --- | --- | ---: | ---: |'];
  for (const r of rows) {
    const base = rows.find((b) => b.workload === r.workload && b.variant === r.baseline);
    const isBaseline = rows.some((o) => o.workload === r.workload && o.baseline === r.variant);
    const ratio = !base ? (isBaseline ? 'baseline' : '')
      : r.faster ? `${(median(base.ms) / median(r.ms)).toFixed(0)}× faster`
      : `${(median(r.ms) / median(base.ms)).toFixed(2)}×`;
    lines.push(`| ${r.workload} | ${r.variant}${r.extra ? ` (${r.extra})` : ''} | ${median(r.ms).toFixed(1)} ms | ${ratio} |`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tlsd-bench-'));
  const { daemon, client } = await startDaemon(dir);
  const rows: Row[] = [];
  let interrupted: string | undefined;
  let ledgerTable: string | undefined;
  let recordsTables: string | undefined;
  try {
    if (wanted('tls')) {
      rows.push(...await tlsReads(client, 1000));
      process.stderr.write('TLS reads done\n');
    }
    if (wanted('churn')) rows.push(...await churnAndLoop(client));
    if (wanted('attach')) rows.push(...await attaches(client));
    if (wanted('kinds')) rows.push(...await attachesByKind(client, 5000));
    if (wanted('eintr')) interrupted = await interruptedCalls(client);
    if (wanted('ledger')) ledgerTable = await ledger(client, daemon.pid!, path.join(dir, 'tlsd.sock'));
    if (wanted('inject')) rows.push(...await injections(client));
    if (wanted('syscalls')) rows.push(...await selectedSyscalls(client));
    if (wanted('engine')) rows.push(...await shimEngine(client));
    if (wanted('records')) {
      rows.push(...await recordsOnDisk());
      recordsTables = [await lossOnKill(), await manyExits(Number(process.env.BENCH_EXITS ?? 10_000_000))].join('\n\n');
    }
  } finally {
    daemon.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`tlsd bench: ${rounds} rounds, medians; ${os.cpus().length} CPUs, Linux ${os.release()}, Node ${process.version}\n`);
  if (rows.length) console.log(table(rows));
  if (interrupted) console.log('\n' + interrupted);
  if (ledgerTable) console.log('\n' + ledgerTable);
  if (recordsTables) console.log('\n' + recordsTables);
  if (wanted('shim')) console.log('\n' + shimTable(await shimAccesses()));
}

/** One access to a thread-local variable, in ns: libtlsshim's get in each
 * mode next to a native __thread and a __tls_get_addr call, one figure per
 * round (bench/shim-get.c's best of 100 interleaved runs). */
async function shimAccesses(): Promise<Map<string, number[]>> {
  const results = new Map<string, number[]>();
  for (let i = 0; i < rounds; i++) {
    for (const mode of ['thread-pointer', 'thread-pointer-syscall', 'tid']) {
      const { stdout } = await run(benchProgram('shim-get'), [mode, benchProgram('libtlsgd.so')]);
      for (const [, name, ns] of stdout.matchAll(/^RESULT (\S+) ([\d.]+)$/gm)) {
        const key = name === 'shim_get' || name === 'shim_claim' ? `${name} ${mode}` : name!;
        results.set(key, [...(results.get(key) ?? []), Number(ns)]);
      }
    }
  }
  return results;
}

function shimTable(results: Map<string, number[]>): string {
  const names: Record<string, string> = {
    native: 'native `__thread` (initial-exec), increment',
    tls_get_addr: '`__tls_get_addr` (general-dynamic, dlopen\'ed library), increment',
    rdfsbase: 'the `rdfsbase` instruction alone',
    'shim_get thread-pointer': 'shim get, thread-pointer mode, rdfsbase, increment',
    'shim_get thread-pointer-syscall': 'shim get, thread-pointer mode without FSGSBASE (arch_prctl), increment',
    'shim_get tid': 'shim get, tid mode (gettid), increment',
    'shim_claim thread-pointer': 'shim release + first get (a claim), thread-pointer mode',
    'shim_claim thread-pointer-syscall': 'shim release + first get (a claim), without FSGSBASE',
    'shim_claim tid': 'shim release + first get (a claim), tid mode',
  };
  // Both the best round and the median: the loops are CPU-bound, so noise
  // only adds time, and on a busy host the median drifts up with it.
  const lines = ['| access | ns, best round | ns, median |', '| --- | ---: | ---: |'];
  for (const [key, label] of Object.entries(names)) {
    const ns = results.get(key);
    // The native and __tls_get_addr figures come from every mode's run.
    if (ns) lines.push(`| ${label} | ${Math.min(...ns).toFixed(2)} | ${median(ns).toFixed(2)} |`);
  }
  return lines.join('\n');
}

/** Tracing overhead: thread churn and a syscall loop, native, under the
 * floor tracer, under tlsd and under strace -f. tlsd against the floor is
 * also given paired by round (the two ran back to back), which this
 * machine's drift disturbs less than a ratio of medians. */
async function churnAndLoop(client: TlsdClient): Promise<Row[]> {
  const churn = [fixture('churn'), '1', '20000'];
  const churnRows = ['native', 'floor tracer', 'floor tracer, polling 20 µs', 'tlsd', 'strace -f']
    .map((variant) => ({ workload: 'thread churn, 20,000 create+join', variant, ms: [] as number[], baseline: 'native' } as Row));
  const loop = [benchProgram('getppid'), '2000000'];
  const loopRows = ['native', 'tlsd'].map((variant) => ({ workload: '2,000,000 getppid', variant, ms: [] as number[], baseline: 'native' }));
  const [nativeChurn, floorChurn, pollingFloorChurn, tlsdChurn, straceChurn] = churnRows as [Row, Row, Row, Row, Row];
  for (let i = 0; i < rounds; i++) {
    nativeChurn.ms.push(await native(churn));
    floorChurn.ms.push(await underFloor(churn, false));
    pollingFloorChurn.ms.push(await underFloor(churn, true));
    tlsdChurn.ms.push(await underTlsd(client, churn));
    straceChurn.ms.push(await underStrace(churn));
    loopRows[0]!.ms.push(await native(loop));
    loopRows[1]!.ms.push(await underTlsd(client, loop));
    process.stderr.write(`round ${i + 1}/${rounds} of churn and getppid done\n`);
  }
  const paired = (floor: Row) => median(tlsdChurn.ms.map((ms, i) => ms / floor.ms[i]!)).toFixed(2);
  tlsdChurn.extra = `paired by round: ${paired(floorChurn)}× the floor tracer, ${paired(pollingFloorChurn)}× the polling one`;
  return [...churnRows, ...loopRows];
}

/** A syscall a rule selects, through the tracer: two ptrace stops per
 * call. Beside strace tracing the same call, and the floor: a tracer that
 * stops at every syscall and only restarts the thread. */
async function selectedSyscalls(client: TlsdClient): Promise<Row[]> {
  const calls = 100_000;
  const loop = [benchProgram('getppid'), String(calls)];
  const workload = `${calls.toLocaleString('en')} getppid, each selected`;
  const rows = ['native', 'floor tracer, PTRACE_SYSCALL, polling 20 µs', 'tlsd, a counting rule', 'strace -f -e trace=getppid']
    .map((variant) => ({ workload, variant, ms: [] as number[], baseline: 'native' } as Row));
  const [nativeRow, floorRow, tlsdRow, straceRow] = rows as [Row, Row, Row, Row];
  for (let i = 0; i < rounds; i++) {
    nativeRow.ms.push(await native(loop));
    // Polling between stops as tlsd-tracer does: a tracer that sleeps
    // between the two stops of a call was slower than tlsd here.
    floorRow.ms.push(selfTimed((await run(benchProgram('floor-tracer'), ['--poll-us', TRACER_POLL_US, '--syscalls', ...loop], { maxBuffer: 1 << 24 })).stdout));
    tlsdRow.ms.push(await underTlsd(client, loop, [{ syscalls: ['getppid'] }]));
    straceRow.ms.push(selfTimed((await run('strace', ['-f', '-o', '/dev/null', '-e', 'trace=getppid', ...loop], { maxBuffer: 1 << 24 })).stdout));
    process.stderr.write(`round ${i + 1}/${rounds} of selected syscalls done\n`);
  }
  const perCall = (r: Row) => ((median(r.ms) - median(nativeRow.ms)) * 1000 / calls).toFixed(1);
  for (const r of [floorRow, tlsdRow, straceRow]) r.extra = `${perCall(r)} µs per call over native`;
  const paired = (other: Row) => median(tlsdRow.ms.map((ms, i) => ms / other.ms[i]!)).toFixed(2);
  tlsdRow.extra += `; paired by round ${paired(straceRow)}× strace, ${paired(floorRow)}× the floor`;
  return [...rows, ...await unselectedSyscalls(client, calls), ...await noRule(client)];
}

/** The same loop with a rule on another call (openat): without a
 * pre-filter every call stops anyway; with killWithDaemon's (and strace's
 * --seccomp-bpf) none does. */
async function unselectedSyscalls(client: TlsdClient, calls: number): Promise<Row[]> {
  const loop = [benchProgram('getppid'), String(calls)];
  const workload = `${calls.toLocaleString('en')} getppid, a rule on openat`;
  const variants: [string, () => Promise<number>][] = [
    ['native', () => native(loop)],
    ['tlsd', () => underTlsd(client, loop, [{ syscalls: ['openat'] }])],
    ['tlsd, killWithDaemon (seccomp pre-filter)', () => underTlsd(client, loop, [{ syscalls: ['openat'] }], true)],
    ['strace -f -e trace=openat', async () => selfTimed((await run('strace', ['-f', '-o', '/dev/null', '-e', 'trace=openat', ...loop], { maxBuffer: 1 << 24 })).stdout)],
    ['strace -f --seccomp-bpf -e trace=openat', async () => selfTimed((await run('strace', ['-f', '--seccomp-bpf', '-o', '/dev/null', '-e', 'trace=openat', ...loop], { maxBuffer: 1 << 24 })).stdout)],
  ];
  const rows = variants.map(([variant]) => ({ workload, variant, ms: [] as number[], baseline: 'native' } as Row));
  for (let i = 0; i < rounds; i++) {
    for (const [k, [, measure]] of variants.entries()) rows[k]!.ms.push(await measure());
    process.stderr.write(`round ${i + 1}/${rounds} of unselected syscalls done\n`);
  }
  return rows;
}

/** The shim's engine: a selected call is a SIGSYS handled in the process,
 * beside the bare SIGSYS round trips of seccomp and of Syscall User
 * Dispatch (the floor), a SIGSYS to a traced thread (each is a
 * signal-delivery stop: why tlsd's tracer lets go of a process whose shim
 * has every rule), the tracer's engine and strace; and a call no rule
 * selects, beside a filter that allows every call and SUD letting every
 * call through. A call through the C library's syscall() and a call by
 * the program's own syscall instruction do not cost the same extra under
 * a filter here: both loops are measured. */
async function shimEngine(client: TlsdClient): Promise<Row[]> {
  const calls = 200_000;
  const loop = [benchProgram('getppid'), String(calls)];
  const floor = (mode: string, n: number) => [benchProgram('sigsys-floor'), mode, String(n)];
  const workload = `${calls.toLocaleString('en')} getppid, each selected`;
  let countsExact = true;
  const variants: [string, () => Promise<number>][] = [
    ['native', () => native(loop)],
    ['floor: a bare SIGSYS round trip (seccomp RET_TRAP)', () => native(floor('trap', calls))],
    ['Syscall User Dispatch: a bare SIGSYS round trip', () => native(floor('sud-trap', calls))],
    ['a bare SIGSYS round trip to a traced thread, its tracer polling 20 µs', () => underFloor(floor('trap', calls), true)],
    ['tlsd, shim engine, a counting rule', async () => {
      const r = await spawnedUnderTlsd(client, loop, [{ syscalls: ['getppid'], engine: 'shim' }], false, true);
      const stats = await client.syscallStats(r.pid);
      countsExact &&= stats.engine === 'shim' && stats.syscalls.find((s) => s.name === 'getppid')?.calls === calls;
      return r.ms;
    }],
    ['tlsd, ptrace engine, a counting rule', () => underTlsd(client, loop, [{ syscalls: ['getppid'], engine: 'ptrace' }])],
    ['tlsd, shim engine, started by the rule in the running loop (attached, the shim injected)', async () => {
      const { ms, exact } = await attachedEngine(client, loop);
      countsExact &&= exact;
      return ms;
    }],
    ['strace -f -e trace=getppid', async () => selfTimed((await run('strace', ['-f', '-o', '/dev/null', '-e', 'trace=getppid', ...loop], { maxBuffer: 1 << 24 })).stdout)],
  ];
  const rows = variants.map(([variant]) => ({ workload, variant, ms: [] as number[], baseline: 'native' } as Row));
  for (let i = 0; i < rounds; i++) {
    for (const [k, [, measure]] of variants.entries()) rows[k]!.ms.push(await measure());
    process.stderr.write(`round ${i + 1}/${rounds} of the shim engine's selected calls done\n`);
  }
  const nativeRow = rows[0]!, shimRow = rows[4]!, attachedRow = rows[6]!, straceRow = rows[7]!;
  const perCall = (r: Row) => `${Math.round((median(r.ms) - median(nativeRow.ms)) * 1e6 / calls)} ns per call over native`;
  for (const r of rows.slice(1)) r.extra = perCall(r);
  const paired = (r: Row) => median(straceRow.ms.map((ms, i) => ms / r.ms[i]!)).toFixed(1);
  shimRow.extra += `; paired by round, strace took ${paired(shimRow)}× its time; counts exact: ${countsExact ? 'yes' : 'NO'}`;
  attachedRow.extra += `; strace took ${paired(attachedRow)}× its time`;

  const many = 2_000_000;
  const openatRule = [{ syscalls: ['openat'], engine: 'shim' as const }];
  const unselected = (how: string, argv: string[], floors: [string, string][]) => {
    const workload = `${many.toLocaleString('en')} getppid ${how}, a shim rule on openat`;
    return {
      workload,
      variants: [
        ['native', () => native(argv)],
        ...floors.map(([variant, mode]) => [variant, () => native(floor(mode, many))]),
        ['tlsd, shim engine', () => underTlsd(client, argv, openatRule, false, true)],
      ] as [string, () => Promise<number>][],
    };
  };
  const parts = [
    unselected('through syscall()', [benchProgram('getppid'), String(many)], []),
    unselected('by its own syscall instruction', floor('none', many), [
      ['floor: a seccomp filter that allows every call', 'allow'],
      ['Syscall User Dispatch on, selector ALLOW', 'sud-allow'],
    ]),
  ];
  const otherRows: Row[] = [];
  for (const part of parts) {
    const partRows = part.variants.map(([variant]) => ({ workload: part.workload, variant, ms: [] as number[], baseline: 'native' } as Row));
    for (let i = 0; i < rounds; i++) {
      for (const [k, [, measure]] of part.variants.entries()) partRows[k]!.ms.push(await measure());
    }
    otherRows.push(...partRows);
  }
  return [...rows, ...otherRows];
}

/** The loop started alone, waiting; attached to, the shim injected, a
 * counting rule added (which starts the shim's engine in it); then let
 * run. Its time, and whether the count is exact. */
async function attachedEngine(client: TlsdClient, loop: string[]): Promise<{ ms: number; exact: boolean }> {
  const child = spawn(loop[0]!, [...loop.slice(1), 'wait'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = linesOf(child);
  await until(() => lines.some((l) => /^ready \d+/.test(l)));
  await client.attach(child.pid!, { mode: 'thread-pointer' });
  const rule = await client.addRule(child.pid!, { syscalls: ['getppid'] });
  child.stdin!.write('go\n');
  await until(() => lines.some((l) => /^done \d+/.test(l)));
  await until(() => child.exitCode !== null);
  const stats = await client.syscallStats(child.pid!);
  const exact = rule.engine === 'shim' && stats.syscalls.find((s) => s.name === 'getppid')?.calls === Number(loop[1]);
  return { ms: selfTimed(lines.join('\n')), exact };
}

/** A process with no rule makes no syscall stop. */
async function noRule(client: TlsdClient): Promise<Row[]> {
  const loop = [benchProgram('getppid'), '2000000'];
  const workload = '2,000,000 getppid, no rule';
  const rows = ['native', 'tlsd'].map((variant) => ({ workload, variant, ms: [] as number[], baseline: 'native' } as Row));
  for (let i = 0; i < rounds; i++) {
    rows[0]!.ms.push(await native(loop));
    rows[1]!.ms.push(await underTlsd(client, loop));
  }
  return rows;
}

/** Attach to large processes: tlsd against gdb, and how long any thread
 * can have been stopped. */
async function attaches(client: TlsdClient): Promise<Row[]> {
  const rows: Row[] = [];
  for (const n of [1000, 10000]) {
    const target = await readyProcess('threads', [String(n)]);
    const gdbRow: Row = { workload: `attach to ${n + 2} threads`, variant: "gdb -batch -ex 'info threads'", ms: [] };
    const tlsdRow: Row = { workload: gdbRow.workload, variant: 'tlsd (POST /v1/processes)', ms: [], baseline: gdbRow.variant, faster: true };
    const stops = new AttachStops();
    const attachRounds = n >= 10000 ? Math.min(rounds, 3) : rounds;
    for (let i = 0; i < attachRounds; i++) {
      const t0 = performance.now();
      await run('gdb', ['-batch', '-nx', '-p', String(target.pid), '-ex', 'info threads'], { maxBuffer: 1 << 26 });
      gdbRow.ms.push(performance.now() - t0);
      await stops.attachOnce(client, target.pid!, tlsdRow);
    }
    tlsdRow.extra = stops.text();
    rows.push(gdbRow, tlsdRow);
    target.kill('SIGKILL');
    process.stderr.write(`attach to ${n} threads done\n`);
  }
  return rows;
}

/** Attach and inject the shim into an n-thread glibc process, against gdb
 * loading it with the program's own dlopen; a new process each time (a
 * shim cannot be loaded twice). The shim's view says how long the one
 * borrowed thread was stopped, and how many threads were stopped at all. */
async function injections(client: TlsdClient): Promise<Row[]> {
  const rows: Row[] = [];
  const shim = path.join(packageRoot, 'native', 'shim', 'build', 'libtlsshim.so');
  for (const n of [1, 1000, 10000]) {
    const workload = `attach + load the shim, ${n} thread${n > 1 ? 's' : ''}`;
    const gdbRow: Row = { workload, variant: `gdb -p -batch -ex 'call (void*)dlopen("…/libtlsshim.so", 2)'`, ms: [] };
    const tlsdRow: Row = { workload, variant: 'tlsd POST /v1/processes { pid, shim }', ms: [], baseline: gdbRow.variant, faster: true };
    const stopped: number[] = [];
    const threadsStopped: number[] = [];
    for (let i = 0; i < (n >= 10000 ? Math.min(rounds, 3) : rounds); i++) {
      const forGdb = await readyProcess('threads', [String(n - 1)]);
      const t0 = performance.now();
      await run('gdb', ['-batch', '-nx', '-p', String(forGdb.pid), '-ex', `call (void*)dlopen("${shim}", 2)`], { maxBuffer: 1 << 26 });
      gdbRow.ms.push(performance.now() - t0);
      // Gone, all its threads, before tlsd's round: their exits would
      // take the CPUs from it.
      await new Promise((r) => { forGdb.once('exit', r); forGdb.kill('SIGKILL'); });
      const forTlsd = await readyProcess('threads', [String(n - 1)]);
      const t1 = performance.now();
      await client.attach(forTlsd.pid!, { mode: 'thread-pointer' });
      tlsdRow.ms.push(performance.now() - t1);
      const { injection } = await client.shim(forTlsd.pid!);
      stopped.push(injection?.stoppedMicros ?? NaN);
      threadsStopped.push(injection?.threadsStopped ?? NaN);
      await new Promise((r) => { forTlsd.once('exit', r); void client.detach(forTlsd.pid!, { kill: true }); });
    }
    tlsdRow.extra = `the borrowed thread stopped median ${median(stopped).toFixed(0)} µs, max ${Math.max(...stopped).toFixed(0)} µs; `
      + `threads stopped by the injection: at most ${Math.max(...threadsStopped)}`;
    rows.push(gdbRow, tlsdRow);
    process.stderr.write(`injection into ${n} threads done\n`);
  }
  return rows;
}

/** What the tracer said, attach after attach, of the stops it caused. */
class AttachStops {
  private readonly longest: number[] = [];
  private readonly interrupted: number[] = [];

  /** Attaches (timed, into `row`) and detaches once. */
  async attachOnce(client: TlsdClient, pid: number, row: Row): Promise<void> {
    const t0 = performance.now();
    const p = await client.attach(pid);
    row.ms.push(performance.now() - t0);
    this.longest.push(p.attach?.longestStopMicros ?? NaN);
    this.interrupted.push(p.attach?.interrupted ?? NaN);
    await client.detach(pid);
  }

  text(): string {
    return `threads stopped per attach: at most ${Math.max(...this.interrupted)}; `
      + `longest stop of any thread: median ${median(this.longest).toFixed(0)} µs, max ${Math.max(...this.longest).toFixed(0)} µs`;
  }
}

/** Attach to an n-thread process of each binary kind tlsd reads: how many
 * threads it had to stop (those the C library's own thread list did not
 * account for), and how long any of them was stopped. */
async function attachesByKind(client: TlsdClient, n: number): Promise<Row[]> {
  const rows: Row[] = [];
  for (const kind of ['glibc-dynamic', 'glibc-static', 'glibc-static-pie', 'musl-dynamic', 'musl-static']) {
    const target = await readyProcess(`${kind}/tls`, [String(n - 1)]);
    const row: Row = { workload: `attach to ${n} threads, by binary kind`, variant: `tlsd, ${kind}`, ms: [] };
    const stops = new AttachStops();
    for (let i = 0; i < rounds; i++) await stops.attachOnce(client, target.pid!, row);
    row.extra = stops.text();
    rows.push(row);
    target.kill('SIGKILL');
    process.stderr.write(`attach to ${kind} done\n`);
  }
  return rows;
}

/** Calls that a stop makes fail with EINTR (test/fixtures/eintr.c: three
 * threads in epoll_wait, sigwaitinfo and semop): how many fail per attach
 * and detach, for tlsd, gdb and strace. */
async function interruptedCalls(client: TlsdClient): Promise<string> {
  const target = await readyProcess('glibc-dynamic/eintr', []);
  const lines = linesOf(target);
  const eintrs = async () => {
    const from = lines.length;
    target.stdin!.write('count\n');
    await until(() => lines.slice(from).some((l) => l.startsWith('eintr ')));
    return lines.slice(from).find((l) => l.startsWith('eintr '))!.split(' ').slice(1).map(Number).reduce((a, b) => a + b, 0);
  };
  const tools: Array<[string, () => Promise<void>]> = [
    ['tlsd (POST, then DELETE /v1/processes/PID)', async () => {
      await client.attach(target.pid!);
      await client.detach(target.pid!);
    }],
    ["gdb -batch -p PID", async () => { await run('gdb', ['-batch', '-nx', '-p', String(target.pid)]); }],
    ['strace -p PID, then SIGINT', async () => {
      const strace = spawn('strace', ['-o', '/dev/null', '-p', String(target.pid)], { stdio: 'ignore' });
      await until(() => tracerOf(target.pid!) === strace.pid);
      strace.kill('SIGINT');
      await new Promise((r) => strace.once('exit', r));
    }],
  ];
  const rowsOut = ['| attach and detach, then count | EINTRs per round (3 blocked threads) |', '| --- | ---: |'];
  try {
    for (const [name, attachAndDetach] of tools) {
      const per: number[] = [];
      for (let i = 0; i < rounds; i++) {
        const before = await eintrs();
        await attachAndDetach();
        await until(() => tracerOf(target.pid!) === 0);
        per.push((await eintrs()) - before);
      }
      rowsOut.push(`| ${name} | ${median(per)} (${Math.min(...per)}–${Math.max(...per)}) |`);
    }
  } finally {
    target.stdin!.write('quit\n');
  }
  return rowsOut.join('\n');
}

const rssMb = (pid: number) => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;

/** A long exit ledger: a program that makes and joins 200,000 threads
 * under tlsd, then its ledger read a page at a time (through the client,
 * and by tlsctl), and what holding it costs the daemon. */
async function ledger(client: TlsdClient, daemonPid: number, socket: string): Promise<string> {
  const threads = 200_000;
  const before = rssMb(daemonPid);
  const p = await client.spawn({ argv: [fixture('churn'), '1', String(threads)] });
  while ((await client.process(p.pid)).state !== 'exited') await sleep(200);
  const first: number[] = [];
  const every: number[] = [];
  const cli: number[] = [];
  let total = 0;
  for (let i = 0; i < rounds; i++) {
    let t0 = performance.now();
    const page = await client.request<{ total: number }>('GET', `/v1/processes/${p.pid}/exits`);
    first.push(performance.now() - t0);
    total = page.total;
    t0 = performance.now();
    await client.exits(p.pid);
    every.push(performance.now() - t0);
    t0 = performance.now();
    await run(process.execPath, [path.join(packageRoot, 'dist', 'clients', 'tlsctl.js'), '--socket', socket, 'exits', String(p.pid)], { maxBuffer: 1 << 30 });
    cli.push(performance.now() - t0);
  }
  const ms = (xs: number[]) => `${median(xs).toFixed(1)} ms`;
  return [
    `| exit ledger of one process, ${total.toLocaleString('en')} exits | median |`, '| --- | ---: |',
    `| first page (1,000 exits) | ${ms(first)} |`,
    `| every page, through the client | ${ms(every)} |`,
    `| tlsctl exits, every row | ${ms(cli)} |`,
    `| daemon RSS before the program, and after | ${before.toFixed(0)} MB, ${rssMb(daemonPid).toFixed(0)} MB |`,
  ].join('\n');
}

/** Two daemons side by side, for records/: one `:memory:`, one on disk. */
async function withDaemon<T>(args: string[], use: (client: TlsdClient, daemon: ChildProcess, dir: string) => Promise<T>, dir?: string): Promise<T> {
  const own = dir ?? mkdtempSync(path.join(os.tmpdir(), 'tlsd-bench-'));
  const { daemon, client } = await startDaemon(own, args);
  try {
    return await use(client, daemon, own);
  } finally {
    if (daemon.exitCode === null && daemon.signalCode === null) {
      const exited = new Promise((r) => daemon.once('exit', r));
      daemon.kill('SIGTERM');
      await exited;
    }
    if (!dir) rmSync(own, { recursive: true, force: true });
  }
}

/** Thread churn with the records on disk, against the same daemon keeping
 * them in memory (`--state-dir :memory:`): what writing to the disk costs
 * the traced program. */
async function recordsOnDisk(): Promise<Row[]> {
  const churn = [fixture('churn'), '1', '20000'];
  const workload = 'thread churn, 20,000 create+join, records';
  const inMemory: Row = { workload, variant: 'tlsd, records in memory (:memory:)', ms: [], baseline: 'tlsd, records in memory (:memory:)' };
  const onDisk: Row = { workload, variant: 'tlsd, records on disk', ms: [], baseline: inMemory.variant };
  await withDaemon(['--state-dir', ':memory:'], (memory) => withDaemon([], async (disk) => {
    for (let i = 0; i < rounds; i++) {
      inMemory.ms.push(await underTlsd(memory, churn));
      onDisk.ms.push(await underTlsd(disk, churn));
    }
  }));
  onDisk.extra = `paired by round: ${median(onDisk.ms.map((ms, i) => ms / inMemory.ms[i]!)).toFixed(3)}×`;
  process.stderr.write('records on disk done\n');
  return [inMemory, onDisk];
}

/** A daemon SIGKILLed while a program churns threads: the events a client
 * saw (published) against those the next daemon finds recorded. */
async function lossOnKill(): Promise<string> {
  const lost: number[] = [];
  const rates: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tlsd-bench-'));
    try {
      let seen = 0;
      let pid = 0;
      await withDaemon([], async (client, daemon) => {
        const stop = new AbortController();
        const watching = (async () => {
          try {
            for await (const e of client.events({ signal: stop.signal })) seen = e.id;
          } catch { /* the daemon is gone */ }
        })();
        pid = (await client.spawn({ argv: [fixture('churn'), '1', '1000000'] })).pid;
        await sleep(1000 + Math.random() * 2000);
        const before = seen;
        await sleep(500);
        rates.push((seen - before) / 500);
        daemon.kill('SIGKILL');
        await watching;
        stop.abort();
      }, dir);
      await withDaemon([], async (client) => {
        const recorded = (await client.request<{ events: Array<{ id: number }> }>('GET', `/v1/events/recent?since=${Math.max(0, seen - 10_000)}&limit=10000`)).events.at(-1)?.id ?? 0;
        lost.push(Math.max(0, seen - recorded));
      }, dir);
      try { process.kill(pid, 'SIGKILL'); } catch { /* it ended */ }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  process.stderr.write('loss on kill done\n');
  const perMs = median(rates);
  return [
    '| daemon SIGKILLed during thread churn | events seen by a client, not recorded |', '| --- | ---: |',
    `| median of ${rounds} kills | ${median(lost)} (${(median(lost) / perMs).toFixed(0)} ms of events) |`,
    `| most | ${Math.max(...lost)} (${(Math.max(...lost) / perMs).toFixed(0)} ms of events) |`,
  ].join('\n');
}

/** One program making `n` threads under a daemon with no retention: the
 * daemon's RSS through it, the database's size, the first page after. */
async function manyExits(n: number): Promise<string> {
  return withDaemon(['--retain-mb', '0'], async (client, daemon, dir) => {
    const before = rssMb(daemon.pid!);
    const p = await client.spawn({ argv: [fixture('churn'), '1', String(n - 1)] });
    let peak = before;
    const t0 = performance.now();
    while ((await client.process(p.pid)).state !== 'exited') {
      peak = Math.max(peak, rssMb(daemon.pid!));
      await sleep(1000);
    }
    const seconds = (performance.now() - t0) / 1000;
    const first: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const t1 = performance.now();
      await client.request('GET', `/v1/processes/${p.pid}/exits`);
      first.push(performance.now() - t1);
    }
    const health = await client.health();
    const exits = (await client.process(p.pid)).threadsExited;
    const file = statSync(path.join(dir, 'state', 'tlsd.db')).size;
    process.stderr.write('many exits done\n');
    return [
      `| one program, ${exits.toLocaleString('en')} thread exits, records on disk, no retention | |`, '| --- | ---: |',
      `| time under tlsd | ${seconds.toFixed(0)} s |`,
      `| daemon RSS: before, most (sampled every second), after | ${before.toFixed(0)} MB, ${peak.toFixed(0)} MB, ${rssMb(daemon.pid!).toFixed(0)} MB |`,
      `| records: bytes used, per million exits | ${(health.records.bytes / 2 ** 20).toFixed(0)} MB, ${(health.records.bytes / 2 ** 20 / (exits / 1e6)).toFixed(0)} MB (file ${(file / 2 ** 20).toFixed(0)} MB) |`,
      `| first page of its ledger (1,000 exits), median | ${median(first).toFixed(1)} ms |`,
    ].join('\n');
  });
}

await main();
