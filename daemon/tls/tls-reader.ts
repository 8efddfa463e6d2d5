/* Reading TLS variables of a supervised process's threads, while it runs:
 * the process's TLS layout (cached per program image, rebuilt when a module
 * comes or goes), the symbol catalogue, and batched reads of one variable
 * in many threads. */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { TlsdError } from '../errors.js';
import type { ProcessRecord, ThreadRecord } from '../registry.js';
import type { Address, Pid, Tid } from '../types.js';
import { demangle, shortName } from './demangle.js';
import type { ElfImage } from './elf.js';
import { discoverLayout, readState, type TlsLayout, type TlsModule, type TlsState } from './layout.js';
import { NotReadyError } from './objects.js';
import { readAll, type Location, type ThreadRead } from './resolve.js';
import { byteLength, decode, defaultType, isFixedSize, typeOfDeclared, type Value, type ValueType } from './values.js';
import { variableTypes, type VariableType } from './dwarf.js';

/** What the reader needs from the supervisor. */
export interface ThreadSource {
  getProcess(pid: Pid): ProcessRecord;
  refreshFsBase(t: ThreadRecord): Promise<void>;
}

export interface Variable {
  /** The symbol's name, as the file has it. */
  name: string;
  /** For a mangled name (C++, Rust), the name its programmer knows
   * (demangle.ts). */
  readable?: string;
  /** Path of the module that defines it. */
  module: string;
  moduleId: number;
  size: number;
  /** Its type as its debug information declares it, if that is there. */
  declared?: VariableType;
  location: Location;
  /** The bytes a thread that has not allocated the block would first see. */
  initial: (length: number) => Buffer;
}

export interface ReadOptions {
  module?: string;
  type?: ValueType;
  length?: number;
  tid?: Tid;
}

export interface ThreadValue {
  tid: Tid;
  address?: Address;
  state: 'ok' | 'unallocated' | 'no-tls' | 'error';
  value?: Value;
  error?: string;
}

export interface ReadResult {
  variable: Variable;
  type: ValueType;
  values: ThreadValue[];
}

const NOT_READY_RETRIES = 20;
const NOT_READY_WAIT_MS = 5;
const DEFAULT_CSTRING_LENGTH = 256;
/** Bytes a module read gives when it names no length: a word. */
const DEFAULT_MODULE_READ = 8;
export const MAX_READ_LENGTH = 65536;

interface Cached {
  image: number;
  layout: TlsLayout;
  variables: Catalogue;
}

/** Every TLS variable by its symbol's name, and by the names a programmer
 * may use instead: the readable name of a mangled one, and the last
 * component of that (`CONST_TLS` of `proj::CONST_TLS`). */
interface Catalogue {
  bySymbol: Map<string, Variable[]>;
  byAlias: Map<string, Variable[]>;
}

interface Current extends Cached {
  state: TlsState;
}

export class TlsReader {
  private readonly cache = new WeakMap<ProcessRecord, Cached>();

  constructor(private readonly threads: ThreadSource, private readonly log: Logger) {}

  async modules(pid: Pid): Promise<TlsModule[]> {
    return (await this.current(this.running(pid))).layout.modules;
  }

  async variables(pid: Pid): Promise<Variable[]> {
    return [...(await this.current(this.running(pid))).variables.bySymbol.values()].flat();
  }

  /** `name`: the symbol's, or the readable name of a mangled one, or the
   * last component of that when no other variable has it. */
  async read(pid: Pid, name: string, opts: ReadOptions): Promise<ReadResult> {
    const p = this.running(pid);
    let cached = await this.current(p);
    // A name we do not know may be in a library loaded since the last look.
    if (!named(cached.variables, name).length) cached = await this.current(p, true);
    const variable = pick(name, named(cached.variables, name), opts.module);
    const type = opts.type ?? (variable.declared && typeOfDeclared(variable.declared)) ?? defaultType(variable.size);
    return this.readVariable(p, cached, variable, type, readLength(type, variable.size, opts.length), opts.tid);
  }

  /** Bytes of a module's TLS block at an offset, in every thread: for a
   * variable without a symbol. `module` is an id, a path or a file name;
   * the type defaults to `bytes`, the length to 8. */
  async readModule(pid: Pid, module: string, offset: number, opts: Omit<ReadOptions, 'module'>): Promise<ReadResult> {
    const p = this.running(pid);
    let cached = await this.current(p);
    let m = findModule(cached.layout, module);
    if (!m) {
      cached = await this.current(p, true);
      m = findModule(cached.layout, module);
    }
    if (!m) throw new TlsdError('NOT_FOUND', `no TLS module ${module} in process ${pid} (GET .../tls/modules lists them)`);
    const type = opts.type ?? 'bytes';
    const length = readLength(type, DEFAULT_MODULE_READ, opts.length);
    const blockSize = Number(m.tls.memsz);
    if (offset + length > blockSize) {
      throw new TlsdError('INVALID_ARGUMENT', `${length} bytes at offset ${offset} run past the end of ${basename(m.object.path)}'s TLS block (${blockSize} bytes)`);
    }
    const tls = m.tls;
    const variable: Variable = {
      name: `${basename(m.object.path)}+${offset}`, module: m.object.path, moduleId: m.id, size: length,
      location: { kind: 'block', module: m, offset: BigInt(offset) },
      initial: (n) => initialBytes(tls.initImage, offset, n),
    };
    return this.readVariable(p, cached, variable, type, length, opts.tid);
  }

  private async readVariable(p: ProcessRecord, cached: Current, variable: Variable, type: ValueType, length: number, tid?: Tid): Promise<ReadResult> {
    const threads = this.threadsToRead(p, tid);
    await Promise.all(threads.filter((t) => t.fsBase === 0n).map((t) => this.threads.refreshFsBase(t).catch(() => undefined)));
    const reads = await this.readThreads(p, cached, variable, threads, length);
    const values = reads.map((r, i): ThreadValue => {
      const tid = threads[i]!.tid;
      switch (r.state) {
        case 'ok': return { tid, address: r.address, state: 'ok', value: decode(type, r.bytes) };
        case 'unallocated': return { tid, state: 'unallocated', value: decode(type, variable.initial(length)) };
        case 'stale-tp': return { tid, state: 'error', error: 'its thread pointer does not point at a TCB' };
        case 'no-tls': return { tid, state: 'no-tls' };
        case 'error': return { tid, ...(r.address !== undefined ? { address: r.address } : {}), state: 'error', error: r.error };
      }
    });
    return { variable, type, values };
  }

  /** A thread whose cached FS base no longer names its TCB is refreshed
   * through the tracer and read again, once (invariant 3). */
  private async readThreads(p: ProcessRecord, current: Current, variable: Variable, threads: ThreadRecord[], length: number): Promise<ThreadRead[]> {
    const { layout, state: { generations } } = current;
    const readSome = (ts: ThreadRecord[]) => readAll(p.pid, layout, variable.location, ts.map((t) => ({ tid: t.tid, tp: t.fsBase })), length, generations);
    const reads = readSome(threads);
    const stale = threads.filter((_, i) => reads[i]!.state === 'stale-tp');
    if (stale.length === 0) return reads;
    await Promise.all(stale.map((t) => this.threads.refreshFsBase(t).catch(() => undefined)));
    const again = readSome(stale);
    let next = 0;
    return reads.map((r) => (r.state === 'stale-tp' ? again[next++]! : r));
  }

  private running(pid: Pid): ProcessRecord {
    const p = this.threads.getProcess(pid);
    if (p.state === 'exited' || p.state === 'lost') throw new TlsdError('GONE', `process ${pid} has exited`);
    if (p.state !== 'running') throw new TlsdError('NOT_FOUND', `process ${pid} is no longer supervised (${p.state}): attach to it`);
    if (p.libc === 'unknown' || p.libc === 'none') {
      throw new TlsdError('INVALID_ARGUMENT', `process ${pid} runs on ${p.libc === 'none' ? 'no C library' : 'a C library tlsd does not recognise'}: its TLS layout is unknown`);
    }
    return p;
  }

  private threadsToRead(p: ProcessRecord, tid?: Tid): ThreadRecord[] {
    if (tid === undefined) return [...p.threads.values()];
    const t = p.threads.get(tid);
    if (!t) throw new TlsdError('NOT_FOUND', `thread ${tid} is not a live thread of process ${p.pid}`);
    return [t];
  }

  /** The layout of the process's current image, rebuilt when stale, with
   * what was read to tell. */
  private async current(p: ProcessRecord, force = false): Promise<Current> {
    const cached = this.cache.get(p);
    if (cached && cached.image === p.image && !force) {
      let state: TlsState;
      try {
        state = readState(p.pid, cached.layout);
      } catch (e) {
        throw this.layoutError(p, e);
      }
      if (state.fingerprint === cached.layout.fingerprint) return { ...cached, state };
    }
    for (let attempt = 0; ; attempt++) {
      try {
        const { layout, state } = discoverLayout(p.pid, p.exe, { libc: p.libc, linkage: p.linkage });
        const fresh = { image: p.image, layout, variables: catalogue(layout) };
        this.cache.set(p, fresh);
        this.log.debug({ tracee: p.pid, modules: layout.modules.length }, 'TLS layout discovered');
        return { ...fresh, state };
      } catch (e) {
        if (e instanceof NotReadyError && attempt < NOT_READY_RETRIES) {
          await sleep(NOT_READY_WAIT_MS);
          continue;
        }
        throw this.layoutError(p, e);
      }
    }
  }

  private layoutError(p: ProcessRecord, e: unknown): TlsdError {
    if (p.state !== 'running') return new TlsdError('GONE', `process ${p.pid} has exited`);
    return new TlsdError('UNAVAILABLE', `cannot read the TLS layout of process ${p.pid}: ${(e as Error).message}`);
  }
}

/** Every TLS variable of every module; musl's errno too. */
function catalogue(layout: TlsLayout): Catalogue {
  const bySymbol = new Map<string, Variable[]>();
  const byAlias = new Map<string, Variable[]>();
  const add = (index: Map<string, Variable[]>, key: string, v: Variable) => index.set(key, [...(index.get(key) ?? []), v]);
  for (const m of layout.modules) {
    const readableNames = readableNamesOf(m.object.elf);
    const declared = declaredTypesOf(m.object.elf);
    for (const s of m.object.elf.tlsSymbols.values()) {
      const readable = readableNames.get(s.name);
      const type = declared.get(s.name);
      const v: Variable = {
        name: s.name, ...(readable ? { readable } : {}), module: m.object.path, moduleId: m.id, size: s.size, ...(type ? { declared: type } : {}),
        location: { kind: 'block', module: m, offset: s.offset },
        initial: (length) => initialBytes(m.tls.initImage, Number(s.offset), length),
      };
      add(bySymbol, s.name, v);
      if (readable) {
        add(byAlias, readable, v);
        if (shortName(readable) !== readable) add(byAlias, shortName(readable), v);
      }
    }
  }
  if (layout.muslErrno && !bySymbol.has('errno')) {
    add(bySymbol, 'errno', {
      name: 'errno', module: layout.muslErrno.object.path, moduleId: 0, size: 4,
      location: { kind: 'thread-pointer', offset: layout.muslErrno.offset },
      initial: (length) => Buffer.alloc(length),
    });
  }
  return { bySymbol, byAlias };
}

/** The variables a name may mean: by symbol first, else by alias. */
function named(c: Catalogue, name: string): Variable[] {
  return c.bySymbol.get(name) ?? c.byAlias.get(name) ?? [];
}

/** Demangled once per ELF file (c++filt is a process). */
const readableCache = new WeakMap<ElfImage, Map<string, string>>();
function readableNamesOf(elf: ElfImage): Map<string, string> {
  let names = readableCache.get(elf);
  if (!names) readableCache.set(elf, (names = demangle([...elf.tlsSymbols.keys()])));
  return names;
}

/** Read once per ELF file, from its DWARF if it has some (a module built
 * with -g, or its separate debug file). */
const declaredCache = new WeakMap<ElfImage, Map<string, VariableType>>();
function declaredTypesOf(elf: ElfImage): Map<string, VariableType> {
  let types = declaredCache.get(elf);
  if (!types) {
    types = new Map();
    try {
      if (elf.dwarfFile && elf.tlsSymbols.size) types = variableTypes(readFileSync(elf.dwarfFile), new Set(elf.tlsSymbols.keys()));
    } catch { /* no DWARF, or one not read: sizes decide */ }
    declaredCache.set(elf, types);
  }
  return types;
}

/** .tdata bytes from `offset`, then the zeros of .tbss. */
function initialBytes(image: Buffer, offset: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  if (offset < image.length) image.copy(out, 0, offset, Math.min(image.length, offset + length));
  return out;
}

/** A module named by its id, its path or its file name. */
function findModule(layout: TlsLayout, name: string): TlsModule | undefined {
  const matching = layout.modules.filter((m) => String(m.id) === name || m.object.path === name || basename(m.object.path) === name);
  if (matching.length > 1) {
    throw new TlsdError('INVALID_ARGUMENT', `several TLS modules are named ${name}; give its id or path: ${matching.map((m) => `${m.object.path} (id ${m.id})`).join(', ')}`);
  }
  return matching[0];
}

function pick(name: string, candidates: Variable[], module?: string): Variable {
  const matching = module === undefined ? candidates
    : candidates.filter((v) => v.module === module || basename(v.module) === module || String(v.moduleId) === module);
  if (matching.length === 1) return matching[0]!;
  if (candidates.length === 0) throw new TlsdError('NOT_FOUND', `no TLS variable named ${name}`);
  if (matching.length === 0) throw new TlsdError('NOT_FOUND', `no TLS variable named ${name} in module ${module}`);
  const readableNames = new Set(matching.map((v) => v.readable ?? v.name));
  if (readableNames.size > 1) {
    throw new TlsdError('INVALID_ARGUMENT', `${name} names several TLS variables; give the whole name: ${[...readableNames].join(', ')}`);
  }
  throw new TlsdError('INVALID_ARGUMENT',
    `${name} is defined in several modules; name one with ?module=: ${matching.map((v) => `${v.module} (id ${v.moduleId})`).join(', ')}`);
}

/** How many bytes a read takes: its type's, or for bytes and cstring the
 * length asked for, else the variable's size. */
function readLength(type: ValueType, size: number, length?: number): number {
  if (isFixedSize(type)) {
    if (length !== undefined) throw new TlsdError('INVALID_ARGUMENT', `length applies to bytes and cstring reads, not ${type}`);
    return byteLength(type, 0);
  }
  const n = length ?? (size || (type === 'cstring' ? DEFAULT_CSTRING_LENGTH : 0));
  if (n < 1 || n > MAX_READ_LENGTH) throw new TlsdError('INVALID_ARGUMENT', `length must be 1..${MAX_READ_LENGTH}`);
  return n;
}
