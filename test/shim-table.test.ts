/* The shim's table read from outside (daemon/shim/table-reader.ts): its
 * layout is the C header's, and in both modes and against both C
 * libraries the fixture's threads each set their shim variables to known
 * values (7*i+1, "thread-I"). */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import test from 'ava';
import { readShimTable, readSlotVariables, shimAbi } from '../daemon/shim/table-reader.js';
import { asAddress, asPid } from '../daemon/types.js';
import { Fixture, fixturePath } from './helpers/fixture.js';

test('the reader\'s layout is native/shim/table.h as the C compiler lays it out', (t) => {
  const c = JSON.parse(execFileSync(fixturePath('shim-abi'), { encoding: 'utf8' })) as Record<string, unknown>;
  const hex = (v: bigint) => v.toString(16);
  t.deepEqual(c, {
    ...shimAbi, magic: hex(shimAbi.magic), slotEmpty: hex(shimAbi.slotEmpty), slotFree: hex(shimAbi.slotFree),
    allocationVarsMask: hex(shimAbi.allocationVarsMask),
  });
});

const WORKERS = 5;

for (const libc of ['glibc', 'musl']) {
  for (const mode of ['thread-pointer', 'tid'] as const) {
    test(`the table of a ${libc} process in ${mode} mode, from outside`, async (t) => {
      const f = await Fixture.start(t, path.join(`${libc}-dynamic`, 'shim-host'), [mode, String(WORKERS)]);
      const address = asAddress(BigInt(f.out.all.find((l) => l.startsWith('table '))!.split(' ')[1]!));
      const threads = f.out.all.flatMap((l) => {
        const m = /^shim-thread (\d+) (\d+) (0x[0-9a-f]+)/.exec(l);
        return m ? [{ index: Number(m[1]), tid: Number(m[2]), fsBase: asAddress(BigInt(m[3]!)) }] : [];
      });
      t.is(threads.length, WORKERS + 1);

      const table = readShimTable(asPid(f.pid), address);
      t.like(table, { version: 1, mode, pid: f.pid, slotCount: 4096, slotBytes: 1024, free: 4096 - (WORKERS + 1) });
      t.deepEqual(table.variables, [
        { handle: 0, name: 'counter', offset: 0, size: 8, align: 8 },
        { handle: 1, name: 'name', offset: 8, size: 16, align: 1 },
        { handle: 2, name: 'signals', offset: 24, size: 8, align: 8 },
      ]);
      t.is(table.claimed.length, WORKERS + 1);
      for (const th of threads) {
        const slot = table.claimed.find((s) => s.tid === th.tid);
        t.truthy(slot, `thread ${th.index} has a slot`);
        t.is(slot!.fsBase, th.fsBase);
        t.is(slot!.key, mode === 'tid' ? BigInt(th.tid) : th.fsBase);
        const vars = readSlotVariables(asPid(f.pid), table, slot!);
        t.is(vars.get('counter')!.readBigInt64LE(0), BigInt(7 * th.index + 1));
        t.is(vars.get('name')!.toString('utf8').replace(/\0+$/, ''), `thread-${th.index}`);
      }
    });
  }
}

test('a wrong address is an error, not a crash', async (t) => {
  const f = await Fixture.start(t, path.join('glibc-dynamic', 'shim-host'), ['tid', '1']);
  const address = BigInt(f.out.all.find((l) => l.startsWith('table '))!.split(' ')[1]!);
  t.throws(() => readShimTable(asPid(f.pid), asAddress(address + 4096n)), { message: /bad magic/ });
  t.throws(() => readShimTable(asPid(f.pid), asAddress(16n)), { message: /cannot read/ });
});
