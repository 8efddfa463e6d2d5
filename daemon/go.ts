/* What a thread of a static Go program runs: its current goroutine and
 * its M, from Go's own layout. On linux/amd64 Go keeps the current g in
 * the thread's TLS slot just below the FS base (runtime/asm_amd64.s,
 * get_tls: g is at -8(FS)), and switches it there at every goroutine
 * switch. Where goid, m and m.id lie in Go's structures changes between
 * Go versions: they are read from the binary's DWARF (daemon/tls/dwarf.ts),
 * once per executable. M's procid, the tid of its thread, checks that
 * what was found is an M of this thread. Tested with Go 1.19. */
import { readFileSync, statSync } from 'node:fs';
import type { Logger } from 'pino';
import { ReadFailure, tryRead } from './memory.js';
import type { ProcessRecord, ThreadRecord } from './registry.js';
import { structLayouts } from './tls/dwarf.js';
import { asAddress, type Pid } from './types.js';

/** g - 8 from the FS base: Go's TLS slot on amd64. */
const G_SLOT = 8n;

interface GoLayout { goid: number; m: number; mId: number; mProcid: number }

export interface Goroutine {
  /** 0 when the thread runs no goroutine (its scheduler's g0, or none). */
  goid: number;
  /** The id of the M (Go's name for a thread it runs goroutines on). */
  m: number;
}

export class GoRuntime {
  /** By executable (path, size and time): a layout, or null for none. */
  private readonly layouts = new Map<string, GoLayout | null>();

  constructor(private readonly log: Logger) {}

  private layout(pid: Pid): GoLayout | null {
    const exe = `/proc/${pid}/exe`;
    let key: string;
    try {
      const st = statSync(exe);
      key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      return null;
    }
    let layout = this.layouts.get(key);
    if (layout !== undefined) return layout;
    layout = null;
    try {
      const found = structLayouts(readFileSync(exe), ['runtime.g', 'runtime.m']);
      const g = found.get('runtime.g'), m = found.get('runtime.m');
      const [goid, gm, mId, mProcid] = [g?.get('goid'), g?.get('m'), m?.get('id'), m?.get('procid')];
      if (goid !== undefined && gm !== undefined && mId !== undefined && mProcid !== undefined) layout = { goid, m: gm, mId, mProcid };
    } catch (e) {
      this.log.debug({ err: e, tracee: pid }, 'no Go layout in its debug information');
    }
    this.layouts.set(key, layout);
    return layout;
  }

  /** For a static Go program whose layout can be read: what each of its
   * threads runs now (undefined for one where that cannot be read, or
   * whose slot holds no g of an M of that thread). */
  reader(p: ProcessRecord): ((t: ThreadRecord) => Goroutine | undefined) | undefined {
    const layout = p.libc === 'none' && p.state === 'running' ? this.layout(p.pid) : null;
    if (!layout) return undefined;
    const u64 = (at: bigint) => {
      const b = tryRead(p.pid, asAddress(at), 8);
      return b instanceof ReadFailure ? undefined : b.readBigUInt64LE(0);
    };
    return (t) => {
      if (t.fsBase < G_SLOT) return undefined;
      const g = u64(t.fsBase - G_SLOT);
      const m = g ? u64(g + BigInt(layout.m)) : undefined;
      if (!g || !m) return undefined;
      if (u64(m + BigInt(layout.mProcid)) !== BigInt(t.tid)) return undefined;
      const goid = u64(g + BigInt(layout.goid)), id = u64(m + BigInt(layout.mId));
      return goid === undefined || id === undefined ? undefined : { goid: Number(goid), m: Number(id) };
    };
  }
}
