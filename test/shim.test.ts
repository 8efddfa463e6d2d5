/* libtlsshim (native/shim): the built file is freestanding, and its table
 * passes the same unit tests (test/fixtures/shim/shim-tests.c) in both
 * modes, against glibc and against musl. */
import { execFile, execFileSync } from 'node:child_process';
import path from 'node:path';
import test from 'ava';
import { packageRoot } from '../daemon/paths.js';
import { fixturePath } from './helpers/fixture.js';

const shim = path.join(packageRoot, 'native', 'shim', 'build', 'libtlsshim.so');
const readelf = (...args: string[]) => execFileSync('readelf', ['-W', ...args, shim], { encoding: 'utf8' });

test('libtlsshim.so: no libc, no interpreter, no TLS of its own, only relative relocations', (t) => {
  const dynamic = readelf('--dynamic');
  t.notRegex(dynamic, /\(NEEDED\)/, 'no DT_NEEDED');
  t.notRegex(dynamic, /\(TEXTREL\)/, 'no text relocations');
  const segments = readelf('--program-headers');
  t.notRegex(segments, /^\s*INTERP\s/m, 'no PT_INTERP');
  t.notRegex(segments, /^\s*TLS\s/m, 'no PT_TLS');
  t.regex(segments, /^\s*GNU_STACK\s.* RW /m, 'a non-executable stack');

  const relocations = readelf('--relocs').split('\n').filter((l) => /^[0-9a-f]{8,}\s/.test(l));
  t.true(relocations.length > 0, 'the constructor pointer is relocated');
  for (const r of relocations) t.regex(r, /R_X86_64_RELATIVE/, r);

  // Nothing undefined: no libc function (memcpy, __stack_chk_fail, ...) is called.
  const symbols = readelf('--dyn-syms').split('\n').filter((l) => /^\s*\d+:/.test(l));
  const undefinedNamed = symbols.filter((l) => /\sUND\s+\S/.test(l));
  t.deepEqual(undefinedNamed, []);
  const exported = symbols.filter((l) => /\sGLOBAL\s+DEFAULT\s+\d+\s/.test(l)).map((l) => l.trim().split(/\s+/).at(-1));
  t.deepEqual(exported.sort(), [
    'tlsshim_engine_entry', 'tlsshim_get', 'tlsshim_inject_area', 'tlsshim_inject_entry', 'tlsshim_inject_gadget', 'tlsshim_inject_return',
    'tlsshim_mode', 'tlsshim_register', 'tlsshim_release', 'tlsshim_release_and_exit',
    'tlsshim_start', 'tlsshim_table', 'tlsshim_uses_rdfsbase',
  ]);
  t.regex(readelf('--section-headers'), /\.init_array/, 'a constructor for LD_PRELOAD');
});

const modes = ['thread-pointer', 'tid'];
const libcs = ['glibc', 'musl'];
const cases = execFileSync(fixturePath(path.join('glibc-dynamic', 'shim-tests')), ['list'], { encoding: 'utf8' })
  .trim().split('\n').filter((c) => c !== 'environment');

function run(libc: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    // No time limit: on a busy machine a case takes what it takes; one
    // that hangs is ava's to report.
    execFile(fixturePath(path.join(`${libc}-dynamic`, 'shim-tests')), args, { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
    });
  });
}

for (const libc of libcs) {
  for (const mode of modes) {
    for (const name of cases) {
      test(`shim table, ${libc}, ${mode}: ${name}`, async (t) => {
        const { code, out } = await run(libc, [mode, name]);
        t.is(code, 0, out);
        t.regex(out, new RegExp(`^ok ${name}$`, 'm'));
      });
    }
    test(`shim table, ${libc}, ${mode}: started from the environment, as under LD_PRELOAD`, async (t) => {
      const started = await run(libc, [mode, 'environment'], { TLSSHIM_MODE: mode, TLSSHIM_SLOTS: '64', TLSSHIM_SLOT_BYTES: '256', EXPECT: 'started' });
      t.is(started.code, 0, started.out);
      const settings: Array<Record<string, string>> = [{ TLSSHIM_SLOTS: '3' }, { TLSSHIM_SLOTS: 'many' }, { TLSSHIM_SLOT_BYTES: '99999999999' }];
      for (const bad of settings) {
        const refused = await run(libc, [mode, 'environment'], { TLSSHIM_MODE: mode, EXPECT: 'refused', ...bad });
        t.is(refused.code, 0, `${JSON.stringify(bad)}: ${refused.out}`);
      }
    });
    test(`shim table, ${libc}, ${mode}: started from a 1.5 MiB environment, its settings last`, async (t) => {
      // A spawn appends the TLSSHIM_* variables, so a large environment
      // must not cut them off (execve allows up to 6 MiB of it).
      const padding = Object.fromEntries(Array.from({ length: 24 }, (_, i) => [`PADDING_${i}`, 'x'.repeat(64 * 1024)]));
      const started = await run(libc, [mode, 'environment'], { ...padding, TLSSHIM_MODE: mode, TLSSHIM_SLOTS: '64', TLSSHIM_SLOT_BYTES: '256', EXPECT: 'started' });
      t.is(started.code, 0, started.out);
    });
  }
}
