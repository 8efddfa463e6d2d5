/* TLS variables by the names their programmers know: C++ and Rust
 * symbols are mangled (a Rust thread_local!'s is about 120 characters and
 * its hash changes with every build); the readable name, its last
 * component when unique, and the mangled name all read the same variable.
 * Values are known by construction (test/fixtures/names/); gdb reads the
 * C++ ones too. */
import test from 'ava';
import { demangle, readable, shortName } from '../daemon/tls/demangle.js';
import { startDaemon } from './helpers/daemon.js';
import { Fixture } from './helpers/fixture.js';
import { gdbPerThread } from './helpers/gdb.js';
import { tlsctl } from './helpers/tlsctl.js';

/** tid -> value, from a read. */
const byTid = (r: { values: Array<{ tid: number; value: unknown }> }) => Object.fromEntries(r.values.map((v) => [v.tid, v.value]));

test('readable names: Rust legacy and v0, C++, and their last components', (t) => {
  t.is(readable('proj::CONST_TLS::{{constant}}::{{closure}}::__RUST_STD_INTERNAL_VAL::hcfde9beec3cf7afa'), 'proj::CONST_TLS');
  t.is(readable('std[e28293b1aa0f68bd]::io::stdio::OUTPUT_CAPTURE::{K#0}::{closure#0}::__RUST_STD_INTERNAL_VAL'), 'std::io::stdio::OUTPUT_CAPTURE');
  t.is(readable('std[e28293b1aa0f68bd]::thread::current::CURRENT'), 'std::thread::current::CURRENT');
  t.is(readable('proj::KEY::__getit::__KEY::h0123456789abcdef'), 'proj::KEY', 'older Rust');
  t.is(readable('Box<int>::value'), 'Box<int>::value');
  t.is(shortName('proj::CONST_TLS'), 'CONST_TLS');
  t.is(shortName('ns::Box<std::pair<int, long>>::value'), 'value');
  t.is(shortName('errno'), 'errno');
  const names = demangle(['_ZN3app7counterE', '_ZN3BoxIiE5valueE', 'tls_exe']);
  t.deepEqual([...names], [['_ZN3app7counterE', 'app::counter'], ['_ZN3BoxIiE5valueE', 'Box<int>::value']], 'by c++filt; a C name is left out');
});

test('C++: a namespaced and a templated thread_local, by readable, short and mangled name, as gdb reads them', async (t) => {
  const fixture = await Fixture.start(t, 'names/tls-cpp');
  const [, pid, worker] = fixture.out.all.find((l) => l.startsWith('ready'))!.split(' ').map(Number) as [number, number, number];
  const gdb = await gdbPerThread(pid, 'print app::counter', /^-?\d+/);
  const { client, socket } = await startDaemon(t);
  await client.attach(pid);

  const expected = { [pid]: 100, [worker]: 200 };
  t.deepEqual(Object.fromEntries([...gdb].map(([tid, v]) => [tid, Number(v)])), expected, 'gdb');
  const read = await client.readTls(pid, 'app::counter');
  t.deepEqual(byTid(read), { [pid]: '100', [worker]: '200' }, 'a long is an i64: a decimal string');
  t.like(read, { symbol: '_ZN3app7counterE', readable: 'app::counter' });
  t.deepEqual(byTid(await client.readTls(pid, '_ZN3app7counterE')), byTid(read), 'by the mangled name');
  t.deepEqual(byTid(await client.readTls(pid, 'Box<int>::value')), { [pid]: 11, [worker]: 22 });
  t.deepEqual(byTid(await client.readTls(pid, 'value')), { [pid]: 11, [worker]: 22 }, 'the last component, unique');

  const err = await t.throwsAsync(client.readTls(pid, 'counter'));
  t.regex(err!.message, /counter names several TLS variables; give the whole name: (app|other)::counter, (app|other)::counter/);
  const symbols = await client.tlsSymbols(pid, 'counter');
  t.deepEqual(symbols.map((s) => s.readable).sort(), ['app::counter', 'other::counter'], '?match= matches readable names');

  const listed = (await tlsctl(socket, 'symbols', String(pid), 'Box')).stdout;
  t.regex(listed, /^Box<int>::value\s+4\s+\S+names\/tls-cpp\s+_ZN3BoxIiE5valueE$/m);
  const printed = (await tlsctl(socket, 'tls', String(pid), 'app::counter')).stdout;
  t.regex(printed, /^app::counter in \S+ \(i64\), symbol _ZN3app7counterE$/m);
});

for (const build of ['tls-rust', 'tls-rust-static']) {
  test(`Rust (${build}): a const and a lazy thread_local! in 16 threads, by proj::NAME, NAME and the mangled name`, async (t) => {
    const fixture = await Fixture.start(t, `names/${build}`);
    const pid = Number(fixture.out.all.find((l) => l.startsWith('ready'))!.split(' ')[1]);
    const tids = new Map(fixture.out.all.flatMap((l) => {
      const m = /^thread (\d+) (\d+)$/.exec(l);
      return m ? [[Number(m[2]), Number(m[1])]] : [];
    }));
    t.is(tids.size, 16);
    const { client } = await startDaemon(t);
    await client.attach(pid);
    for (const [name, base] of [['CONST_TLS', 1000], ['LAZY_TLS', 2000]] as const) {
      const [symbol] = await client.tlsSymbols(pid, `proj::${name}`);
      t.truthy(symbol, name);
      t.true(symbol!.name.startsWith(`_ZN4proj${name.length}${name}`), symbol!.name);
      t.is(symbol!.readable, `proj::${name}`);
      const expected = Object.fromEntries([...tids].map(([tid, i]) => [tid, String(base + i)]));
      for (const asked of [`proj::${name}`, name, symbol!.name]) {
        // A lazy one's storage holds its state beside its value, before or
        // after it as rustc versions differ: the value is one of its words.
        const read = await client.readTls(pid, asked, { type: 'bytes', length: symbol!.size });
        const values = Object.fromEntries(read.values.map((v) => {
          const words = Buffer.from(String(v.value), 'hex');
          const found = [0, 8, 16].filter((at) => at + 8 <= words.length).map((at) => String(words.readBigUInt64LE(at)));
          return [v.tid, found.find((w) => w === expected[v.tid]) ?? found.join(',')];
        }));
        t.deepEqual(values, expected, `${asked} in ${build}`);
      }
      if (name === 'CONST_TLS') t.deepEqual(byTid(await client.readTls(pid, name, { type: 'u64' })), expected, 'a const one is its value');
    }
  });
}
