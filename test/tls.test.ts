/* TLS reads against the TLS fixture in every binary kind it is built in:
 * each thread i stores 7*i+1, so every expected value is known. */
import { execFileSync } from 'node:child_process';
import { basename } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import type { TlsdClient } from '../clients/client.js';
import { startDaemon } from './helpers/daemon.js';
import { gdbPerThread } from './helpers/gdb.js';
import { Fixture, fixturePath, noThreadInTracingStop, tracerPidOf, waitUntil } from './helpers/fixture.js';

const kinds = ['glibc-dynamic', 'glibc-static', 'glibc-static-pie', 'musl-dynamic', 'musl-static'] as const;
type Kind = (typeof kinds)[number];
const isDynamic = (k: Kind) => k.endsWith('dynamic');
const libcOf = (k: Kind) => (k.startsWith('glibc') ? 'glibc' : 'musl');
const WORKERS = 6;

/** tid -> thread index, from the fixture's "tls-thread I TID" lines. */
function indexByTid(f: Fixture): Map<number, number> {
  return new Map(f.out.all.flatMap((l) => {
    const m = l.match(/^tls-thread (\d+) (\d+)$/);
    return m ? [[Number(m[2]), Number(m[1])] as [number, number]] : [];
  }));
}

async function attached(t: ExecutionContext, kind: Kind, workers = WORKERS) {
  const fixture = await Fixture.start(t, `${kind}/tls`, [String(workers)]);
  const { client } = await startDaemon(t);
  await client.attach(fixture.pid);
  return { fixture, client, index: indexByTid(fixture) };
}

/** The variable's value in every thread the fixture reported, by index. */
async function valuesByIndex(client: TlsdClient, f: Fixture, name: string, query: Parameters<TlsdClient['readTls']>[2] = {}) {
  const index = indexByTid(f);
  const r = await client.readTls(f.pid, name, query);
  const out = new Map<number, { state: string; value: unknown; address: string | null }>();
  for (const v of r.values) {
    const i = index.get(v.tid);
    if (i !== undefined) out.set(i, v);
  }
  return { ...r, byIndex: out };
}

/** test/fixtures/tls/tls.c's 125-character variable: 7*i+2 in thread i. */
const LONG_NAME = 'tls_a_name_as_long_as_the_mangled_name_of_a_rust_thread_local_for_instance_proj_9CONST_TLS_with_its_hash_17h0123456789abcdefE';
/** 300 characters (test/fixtures/tls/tls.c). */
const NAME_300 = 'tls_a_three_hundred_character_name_as_long_as_the_longest_names_that_templates_and_namespaces_make_in_cpp_as_long_as_the_longest_names_that_templates_and_namespaces_make_in_cpp_as_long_as_the_longest_names_that_templates_and_namespaces_make_in_cpp_as_long_as_the_longest_names_that_templates_and_namz';

async function command(f: Fixture, line: string, answer: RegExp): Promise<void> {
  const from = f.out.all.length;
  f.send(line);
  await f.out.waitFor(answer, from);
}

for (const kind of kinds) {
  test(`${kind}: a __thread of the program, of a needed library, errno, a cstring and bytes, in every thread`, async (t) => {
    const { fixture, client, index } = await attached(t, kind);
    t.is(index.size, WORKERS + 1);
    const p = await client.process(fixture.pid);
    t.is(p.libc, libcOf(kind));
    t.is(p.linkage, isDynamic(kind) ? 'dynamic' : 'static');

    const modules = await client.tlsModules(fixture.pid);
    t.is(modules[0]?.id, 1, 'the executable has TLS, so it is module 1');
    t.is(modules[0]?.path, fixturePath(`${kind}/tls`));
    const symbols = await client.tlsSymbols(fixture.pid);
    const needed = symbols.find((s) => s.name === 'tls_needed');
    t.is(needed && basename(needed.module), isDynamic(kind) ? 'libtlsneeded.so' : 'tls', 'linked in when static');
    t.like(symbols.find((s) => s.name === 'tls_exe'), { name: 'tls_exe', module: fixturePath(`${kind}/tls`), size: 4 });
    t.deepEqual((await client.tlsSymbols(fixture.pid, 'CONST_TLS')).map((s) => s.name), [LONG_NAME], 'a search by part of a name');

    // The same variable read by module and offset, as TLS without a symbol is.
    const exe = symbols.find((s) => s.name === 'tls_exe')!;
    const byName = await client.readTls(fixture.pid, 'tls_exe');
    for (const module of ['1', 'tls', fixturePath(`${kind}/tls`)]) {
      const at = await client.readTlsAt(fixture.pid, module, exe.offset!, { type: 'i32' });
      t.deepEqual(at.values, byName.values, `tls_exe at module ${module} offset ${exe.offset}`);
    }
    const block = modules[0]!.tlsSize;
    t.like(await client.readTlsAt(fixture.pid, 1, block - 4, { length: 8 }).catch((e: unknown) => e), { status: 400, code: 'INVALID_ARGUMENT' }, 'past the block');
    t.like(await client.readTlsAt(fixture.pid, 'libnothing.so', 0).catch((e: unknown) => e), { status: 404, code: 'NOT_FOUND' });

    for (const [name, type] of [['tls_exe', 'i32'], ['tls_needed', 'i64'], ['errno', 'i32']] as const) {
      const r = await valuesByIndex(client, fixture, name);
      t.is(r.type, type, `${name}: type from its size`);
      t.is(r.byIndex.size, WORKERS + 1, `${name}: a value for every thread`);
      for (const [i, v] of r.byIndex) {
        const expected = type === 'i64' ? String(7 * i + 1) : 7 * i + 1;
        t.like(v, { state: 'ok', value: expected }, `${name} in thread ${i}`);
        t.regex(v.address ?? '', /^0x[0-9a-f]+$/);
      }
    }
    // A name longer than a URL path segment may be by fastify's default,
    // as a Rust thread_local!'s mangled name is.
    const long = await valuesByIndex(client, fixture, LONG_NAME);
    for (const [i, v] of long.byIndex) t.like(v, { state: 'ok', value: String(7 * i + 2) }, `the long name in thread ${i}`);
    t.is(NAME_300.length, 300);
    const longer = await valuesByIndex(client, fixture, NAME_300);
    t.is(longer.byIndex.size, WORKERS + 1);
    for (const [i, v] of longer.byIndex) t.like(v, { state: 'ok', value: String(7 * i + 3) }, `the 300-character name in thread ${i}`);
    const names = await valuesByIndex(client, fixture, 'tls_name', { type: 'cstring' });
    const bytes = await valuesByIndex(client, fixture, 'tls_name', { type: 'bytes', length: 10 });
    for (const [i, v] of names.byIndex) {
      t.is(v.value, `thread-${i}`);
      t.is(bytes.byIndex.get(i)?.value, Buffer.concat([Buffer.from(`thread-${i}`), Buffer.alloc(10)]).subarray(0, 10).toString('hex'));
    }
    const one = [...index].find(([, i]) => i === 3)!;
    const single = await client.readTls(fixture.pid, 'tls_exe', { tid: one[0], type: 'u8' });
    t.deepEqual(single.values.map((v) => [v.tid, v.value]), [[one[0], 22]], 'one thread, as u8');
    t.true(noThreadInTracingStop(fixture.pid), 'the program was never stopped for it');
  });

  test(`${kind}: threads that end during reads are reported, not fatal`, async (t) => {
    const { fixture, client } = await attached(t, kind, 2);
    await command(fixture, 'churn', /^churning$/);
    let gone = 0;
    for (let n = 0; n < 40; n++) {
      const r = await valuesByIndex(client, fixture, 'tls_exe');
      for (const [i, v] of r.byIndex) t.like(v, { state: 'ok', value: 7 * i + 1 });
      for (const v of r.values) t.true(v.state === 'ok' || v.state === 'error', `${v.state} ${JSON.stringify(v)}`);
      gone += r.values.filter((v) => v.state === 'error').length;
    }
    t.log(`${gone} reads met a thread that had ended`);
    t.is((await client.health()).status, 'ok');
  });
}

for (const kind of kinds.filter(isDynamic)) {
  test(`${kind}: dlopen'ed modules, threads before and after, untouched blocks, and a module id reused after dlclose`, async (t) => {
    const { fixture, client } = await attached(t, kind, 3);
    const lib = (name: string) => fixturePath(`${kind}/${name}`);
    const glibc = libcOf(kind) === 'glibc';
    await command(fixture, `dlopen ${lib('libtlsdyn.so')}`, /^dlopened /);
    await command(fixture, 'spawn 3', /^spawned 7$/);
    for (const i of [1, 5]) await command(fixture, `call ${i} dyn_set`, /^called /);

    // Threads 1 (born before the dlopen) and 5 (after) touched it; the rest
    // never did: glibc has not allocated their block, musl allocated it at once.
    const untouched = glibc ? { state: 'unallocated', value: 5, address: null } : { state: 'ok', value: 5 };
    let r = await valuesByIndex(client, fixture, 'tls_dyn');
    t.is(r.byIndex.size, 7);
    for (const [i, v] of r.byIndex) t.like(v, [1, 5].includes(i) ? { state: 'ok', value: 7 * i + 1 } : untouched, `tls_dyn in thread ${i}`);
    const idOf = async (name: string) => (await client.tlsModules(fixture.pid)).find((m) => basename(m.path) === name)?.id;
    const firstId = await idOf('libtlsdyn.so');
    t.truthy(firstId);

    await command(fixture, `dlclose ${lib('libtlsdyn.so')}`, /^dlclosed /);
    await command(fixture, `dlopen ${lib('libtlsdyn2.so')}`, /^dlopened /);
    await command(fixture, 'call 2 dyn2_set', /^called /);
    if (glibc) t.is(await idOf('libtlsdyn2.so'), firstId, 'glibc reuses the id of the closed module');
    else t.is(await idOf('libtlsdyn2.so'), firstId! + 1, 'musl never reuses an id');
    // Threads 1 and 5 still have a DTV entry for the old module under that
    // id: the generation check must not follow it.
    r = await valuesByIndex(client, fixture, 'tls_dyn2');
    for (const [i, v] of r.byIndex) t.like(v, i === 2 ? { state: 'ok', value: 15 } : { ...untouched, value: 9 }, `tls_dyn2 in thread ${i}`);

    // TLSDESC (both libcs) and initial-exec (glibc only), opened late: every
    // thread has the initial image, thread 3 its own value.
    const late = glibc ? [['libtlsdesc.so', 'desc', 4], ['libtlsie.so', 'ie', 3]] as const : [['libtlsdesc.so', 'desc', 4]] as const;
    for (const [file, name, initial] of late) {
      await command(fixture, `dlopen ${lib(file)}`, /^dlopened /);
      await command(fixture, `call 3 ${name}_set`, /^called /);
      r = await valuesByIndex(client, fixture, `tls_${name}`);
      for (const [i, v] of r.byIndex) {
        if (i === 3) t.like(v, { state: 'ok', value: 22 }, `tls_${name} in thread 3`);
        else t.true(v.value === initial && (v.state === 'ok' || v.state === 'unallocated'), `tls_${name} in thread ${i}: ${JSON.stringify(v)}`);
      }
    }

    // The same name in several modules needs ?module=.
    const ambiguous = await client.readTls(fixture.pid, 'tls_everywhere').catch((e: unknown) => e);
    t.like(ambiguous, { status: 400, code: 'INVALID_ARGUMENT' });
    t.regex((ambiguous as Error).message, /libtlsdyn2\.so.*libtlsdesc\.so|libtlsdesc\.so.*libtlsdyn2\.so/);
    const chosen = await client.readTls(fixture.pid, 'tls_everywhere', { module: 'libtlsdesc.so' });
    t.is(basename(chosen.module), 'libtlsdesc.so');
    t.true(chosen.values.every((v) => v.value === 4));
  });
}

test('glibc-dynamic: a static TLS variable of a stripped library, from its separate debug file', async (t) => {
  const { fixture, client } = await attached(t, 'glibc-dynamic', 2);
  const file = fixturePath('glibc-dynamic/libtlsdebug.so');
  // The library itself has no symbol for it: only its debug file does.
  t.notRegex(execFileSync('readelf', ['-Ws', file], { encoding: 'utf8' }), /tls_debug_only/);
  t.regex(execFileSync('readelf', ['-Ws', `${file}.debug`], { encoding: 'utf8' }), /TLS\s+LOCAL\s+\S+\s+\d+\s+tls_debug_only/);
  await command(fixture, `dlopen ${file}`, /^dlopened /);
  await command(fixture, 'call 1 debug_only_set', /^called /);

  // Its type too: from the debug file's DWARF.
  t.like((await client.tlsSymbols(fixture.pid, 'tls_debug_only'))[0], { name: 'tls_debug_only', module: file, size: 8, type: 'long int' });
  const r = await valuesByIndex(client, fixture, 'tls_debug_only');
  t.is(r.byIndex.size, 3);
  // Thread 1 set it; the others never touched it: glibc has not allocated
  // their block, whose first value is the initial image's 5.
  for (const [i, v] of r.byIndex) t.like(v, i === 1 ? { state: 'ok', value: '8' } : { state: 'unallocated', value: '5' }, `thread ${i}`);

  // Without any symbol: the module's block at the offset readelf gives
  // (a TLS symbol's value is its offset in the block).
  const offset = Number.parseInt(/^\s*\d+:\s+([0-9a-f]+)\s+\d+\s+TLS\s+LOCAL\s+\S+\s+\d+\s+tls_debug_only$/m.exec(execFileSync('readelf', ['-Ws', `${file}.debug`], { encoding: 'utf8' }))![1]!, 16);
  const module = (await client.tlsModules(fixture.pid)).find((m) => m.path === file)!;
  const at = await client.readTlsAt(fixture.pid, String(module.id), offset, { type: 'i64' });
  t.deepEqual(at.values.map((v) => [v.tid, v.state, v.value]), (await client.readTls(fixture.pid, 'tls_debug_only')).values.map((v) => [v.tid, v.state, v.value]));
});

test('glibc-dynamic: every value is what gdb reads', async (t) => {
  const fixture = await Fixture.start(t, 'glibc-dynamic/tls', ['20']);
  const byGdb = new Map<string, Map<number, string>>();
  for (const name of ['tls_exe', 'tls_needed', LONG_NAME]) byGdb.set(name, await gdbPerThread(fixture.pid, `print ${name}`, /^-?\d+$/));
  // glibc's own, known only to its separate debug file (libc6-dbg): a
  // pointer, shown as one because the debug file says so.
  byGdb.set('tcache', await gdbPerThread(fixture.pid, 'print/x (unsigned long) tcache', /^0x[0-9a-f]+$/));
  await waitUntil('gdb to detach', () => tracerPidOf(fixture.pid) === 0);
  const { client } = await startDaemon(t);
  await client.attach(fixture.pid);
  // Types as the program's DWARF declares them; a read shows a char array
  // as a string unless asked otherwise.
  const symbols = await client.tlsSymbols(fixture.pid, 'tls_');
  t.like(symbols.find((s) => s.name === 'tls_exe'), { type: 'int' });
  t.like(symbols.find((s) => s.name === 'tls_name'), { type: 'char[32]' });
  t.like((await client.tlsSymbols(fixture.pid, 'tcache')).find((s) => s.name === 'tcache'), { type: 'tcache_perthread_struct *' });
  const names = await client.readTls(fixture.pid, 'tls_name');
  t.is(names.type, 'cstring');
  t.true(names.values.every((v) => typeof v.value === 'string' && /^(thread-\d+|)$/.test(v.value)), JSON.stringify(names.values.slice(0, 3)));
  for (const [name, expected] of byGdb) {
    t.is(expected.size, 21, `gdb read ${name} in every thread`);
    const r = await client.readTls(fixture.pid, name);
    const byTid = (entries: Iterable<[number, string]>) => [...entries].sort(([a], [b]) => a - b);
    t.deepEqual(byTid(r.values.map((v) => [v.tid, String(v.value)])), byTid(expected), name);
  }
});

test('bad TLS requests: a clear error, nothing changed', async (t) => {
  const { fixture, client } = await attached(t, 'glibc-dynamic', 1);
  const cases: Array<[string, () => Promise<unknown>, number, string]> = [
    // Through client.request where the typed client would not let a test send it.
    ['an unknown symbol', () => client.readTls(fixture.pid, 'no_such_variable'), 404, 'NOT_FOUND'],
    ['an unknown type', () => client.request('GET', `/v1/processes/${fixture.pid}/tls/symbols/tls_exe?type=i128`), 400, 'INVALID_ARGUMENT'],
    ['a length for a fixed-size type', () => client.readTls(fixture.pid, 'tls_exe', { type: 'i32', length: 4 }), 400, 'INVALID_ARGUMENT'],
    ['a length of 0', () => client.readTls(fixture.pid, 'tls_name', { type: 'bytes', length: 0 }), 400, 'INVALID_ARGUMENT'],
    ['a thread of another process', () => client.readTls(fixture.pid, 'tls_exe', { tid: 1 }), 404, 'NOT_FOUND'],
    ['a module that does not define it', () => client.readTls(fixture.pid, 'tls_exe', { module: 'libc.so.6' }), 404, 'NOT_FOUND'],
    ['an unknown query field', () => client.request('GET', `/v1/processes/${fixture.pid}/tls/symbols/tls_exe?colour=red`), 400, 'INVALID_ARGUMENT'],
    ['an unknown name of 1,000 characters', () => client.readTls(fixture.pid, 'x'.repeat(1000)), 404, 'NOT_FOUND'],
    ['a name longer than the API takes', () => client.readTls(fixture.pid, 'x'.repeat(5000)), 414, 'URI_TOO_LONG'],
    ['a process not supervised', () => client.tlsModules(4194000), 404, 'NOT_FOUND'],
  ];
  for (const [what, request, status, code] of cases) {
    const e = await request().then(() => undefined, (err: unknown) => err);
    t.like(e, { status, code }, what);
  }
  const r = await client.readTls(fixture.pid, 'tls_exe');
  t.true(r.values.every((v) => v.state === 'ok'), 'still reads');
  t.true(noThreadInTracingStop(fixture.pid));
});
