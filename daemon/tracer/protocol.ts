/* The tracer wire protocol of native/tracer/protocol.h, which describes it
 * once; test/protocol.test.ts checks this file against it: every number
 * below, and the fields each message is read and each command written
 * with. */
import type { CompiledRule } from '../syscalls/rule.js';
import type { Pid, Tid, Address, FsBaseSource } from '../types.js';
import { asAddress, asPid, asTid } from '../types.js';

export const PROTOCOL_VERSION = 10;
export const MAX_FRAME = 16 << 20;

export const Command = { attach: 1, spawn: 2, detach: 3, refresh: 4, shim: 5, settle: 6, inject: 7, tidy: 8, rules: 9, counts: 10, handoff: 11, engine: 12 } as const;

export const Message = {
  hello: 1, reply: 2, processNew: 3, threadNew: 4, threadFsBase: 5,
  threadExiting: 6, threadGone: 7, exec: 8, detached: 9, log: 10, injected: 11,
  syscall: 12, syscallCount: 13,
} as const;

/** Enumerations on the wire, each value at the index of its number. */
export const origins = ['attach', 'spawn', 'fork', 'vfork', 'clone'] as const;
export type TracerOrigin = (typeof origins)[number];
export const fsSources: readonly FsBaseSource[] = ['attach', 'clone', 'exec', 'stop', 'refresh'];
export const exitCalls = ['none', 'exit', 'exit_group'] as const;
export type ExitCall = (typeof exitCalls)[number];
export const logLevels = ['debug', 'info', 'warn', 'error'] as const;
/** How far an injection went (enum tlsd_inject_step). */
export const injectSteps = ['checks', 'borrow', 'stub', 'memfd', 'image', 'map', 'start', 'cleanup', 'done'] as const;
export type InjectStep = (typeof injectSteps)[number];
/** enum tlsshim_mode, for INJECT and SPAWN (0: no shim). */
export const shimModeNumbers = { 'thread-pointer': 1, tid: 2 } as const;

/** What INJECT (and a SPAWN with a shim) load and start. */
export interface InjectRequest {
  mode: keyof typeof shimModeNumbers;
  slotCount: number;
  slotBytes: number;
  shimPath: string;
  shimSocket: string;
  /** The calls the shim's syscall engine traps (64 bytes); none: no engine. */
  trap?: Buffer;
}

/** SYSCALL flags (enum tlsd_syscall_flag): what was done to the call. */
export const syscallFlags = { injected: 1, signaled: 2, delayed: 4, noReturn: 8 } as const;

/** What a process runs, as the tracer read it while the process stopped. */
export interface ProcessImage {
  exe: string;
  argv: string[];
}

/** Times on the wire are CLOCK_REALTIME nanoseconds. */
export type WireTime = bigint;

export type TracerMessage =
  | { type: 'hello'; version: number; tracerPid: Pid }
  | { type: 'reply'; req: number; errno: number; pid: Pid; threads: number; value: bigint; passes: number; interrupted: number }
  | { type: 'processNew'; pid: Pid; origin: TracerOrigin; parentPid: Pid; parentTid: Tid; inheritsShim: boolean; at: WireTime } & ProcessImage
  | { type: 'threadNew'; pid: Pid; tid: Tid; parentTid: Tid; fsBase: Address; source: FsBaseSource; at: WireTime }
  | { type: 'threadFsBase'; pid: Pid; tid: Tid; fsBase: Address; source: FsBaseSource }
  | { type: 'threadExiting'; pid: Pid; tid: Tid; exitStatus: number; exitCall: ExitCall; at: WireTime; shimReclaimed: boolean }
  | { type: 'threadGone'; pid: Pid; tid: Tid; waitStatus: number; at: WireTime }
  | { type: 'exec'; pid: Pid; formerTid: Tid; fsBase: Address; at: WireTime } & ProcessImage
  | { type: 'detached'; pid: Pid }
  | { type: 'log'; level: (typeof logLevels)[number]; text: string }
  | { type: 'injected'; req: number; errno: number; pid: Pid; tid: Tid; base: Address; stoppedNs: bigint; interrupted: number; step: InjectStep; reason: string }
  | { type: 'syscall'; pid: Pid; tid: Tid; rule: number; nr: number; args: bigint[]; retval: bigint; durationNs: bigint; flags: number; at: WireTime; path: string }
  | { type: 'syscallCount'; pid: Pid; tid: Tid; nr: number; calls: number; errors: number; timeNs: bigint };

export type TracerCommand =
  | { type: 'attach'; req: number; pid: Pid }
  | { type: 'spawn'; req: number; path: string; argv: string[]; env: string[]; cwd: string; stdout: string; stderr: string; inject?: InjectRequest; killWithDaemon?: boolean; rules?: CompiledRule[] }
  | { type: 'detach'; req: number; pid: Pid; kill: boolean; keepChildren: boolean }
  | { type: 'refresh'; req: number; tid: Tid }
  | { type: 'shim'; req: number; pid: Pid; table: Address }
  | { type: 'settle'; req: number; pid: Pid; threadPointers: ReadonlyMap<Tid, Address> }
  | { type: 'inject'; req: number; pid: Pid } & InjectRequest
  | { type: 'tidy'; req: number; pid: Pid; shimPath: string }
  | { type: 'rules'; req: number; pid: Pid; rules: CompiledRule[] }
  | { type: 'counts'; req: number; pid: Pid }
  | { type: 'handoff'; req: number; pid: Pid }
  | { type: 'engine'; req: number; pid: Pid; shimPath: string; trap: Buffer };

export class ProtocolError extends Error {}

/** A field's kind on the wire, as protocol.h names it. */
export type FieldKind = 'u8' | 'u32' | 'i32' | 'u64' | 'str';

/** Reads the fields of one frame in order; running past its end throws.
 * `kinds`, when given, records the kind of each field read. */
class FrameReader {
  private at = 0;
  constructor(private readonly body: Buffer, private readonly kinds?: FieldKind[]) {}
  private need(n: number, kind: FieldKind): number {
    if (this.at + n > this.body.length) throw new ProtocolError('truncated tracer frame');
    this.kinds?.push(kind);
    const at = this.at;
    this.at += n;
    return at;
  }
  u8(): number { return this.body.readUInt8(this.need(1, 'u8')); }
  u32(): number { return this.body.readUInt32LE(this.need(4, 'u32')); }
  i32(): number { return this.body.readInt32LE(this.need(4, 'i32')); }
  u64(): bigint { return this.body.readBigUInt64LE(this.need(8, 'u64')); }
  str(): string {
    const n = this.body.readUInt32LE(this.need(4, 'str'));
    if (this.at + n > this.body.length) throw new ProtocolError('truncated tracer frame');
    this.at += n;
    return this.body.toString('utf8', this.at - n, this.at);
  }
  image(): ProcessImage {
    const exe = this.str();
    const cmdline = this.str();
    return { exe, argv: cmdline ? cmdline.replace(/\0$/, '').split('\0') : [] };
  }
}

function pick<T>(table: readonly T[], index: number, what: string): T {
  const v = table[index];
  if (v === undefined) throw new ProtocolError(`unknown ${what} ${index}`);
  return v;
}

/** `kinds`, when given, records the kind of each field read (for the
 * test that compares them with protocol.h). */
export function decodeMessage(body: Buffer, kinds?: FieldKind[]): TracerMessage {
  const r = new FrameReader(body, kinds);
  const type = r.u8();
  switch (type) {
    case Message.hello:
      return { type: 'hello', version: r.u32(), tracerPid: asPid(r.u32()) };
    case Message.reply:
      return { type: 'reply', req: r.u32(), errno: r.i32(), pid: asPid(r.u32()), threads: r.u32(), value: r.u64(), passes: r.u32(), interrupted: r.u32() };
    case Message.processNew:
      return { type: 'processNew', pid: asPid(r.u32()), origin: pick(origins, r.u8(), 'origin'), parentPid: asPid(r.u32()), parentTid: asTid(r.u32()), inheritsShim: r.u8() === 1, at: r.u64(), ...r.image() };
    case Message.threadNew:
      return { type: 'threadNew', pid: asPid(r.u32()), tid: asTid(r.u32()), parentTid: asTid(r.u32()), fsBase: asAddress(r.u64()), source: pick(fsSources, r.u8(), 'source'), at: r.u64() };
    case Message.threadFsBase:
      return { type: 'threadFsBase', pid: asPid(r.u32()), tid: asTid(r.u32()), fsBase: asAddress(r.u64()), source: pick(fsSources, r.u8(), 'source') };
    case Message.threadExiting:
      return { type: 'threadExiting', pid: asPid(r.u32()), tid: asTid(r.u32()), exitStatus: r.i32(), exitCall: pick(exitCalls, r.u8(), 'exit call'), at: r.u64(), shimReclaimed: r.u8() === 1 };
    case Message.threadGone:
      return { type: 'threadGone', pid: asPid(r.u32()), tid: asTid(r.u32()), waitStatus: r.i32(), at: r.u64() };
    case Message.exec:
      return { type: 'exec', pid: asPid(r.u32()), formerTid: asTid(r.u32()), fsBase: asAddress(r.u64()), at: r.u64(), ...r.image() };
    case Message.detached:
      return { type: 'detached', pid: asPid(r.u32()) };
    case Message.log:
      return { type: 'log', level: pick(logLevels, r.u8(), 'log level'), text: r.str() };
    case Message.injected:
      return {
        type: 'injected', req: r.u32(), errno: r.i32(), pid: asPid(r.u32()), tid: asTid(r.u32()), base: asAddress(r.u64()),
        stoppedNs: r.u64(), interrupted: r.u32(), step: pick(injectSteps, r.u8(), 'injection step'), reason: r.str(),
      };
    case Message.syscall:
      return {
        type: 'syscall', pid: asPid(r.u32()), tid: asTid(r.u32()), rule: r.u32(), nr: r.u32(),
        args: [r.u64(), r.u64(), r.u64(), r.u64(), r.u64(), r.u64()], retval: BigInt.asIntN(64, r.u64()),
        durationNs: r.u64(), flags: r.u8(), at: r.u64(), path: r.str(),
      };
    case Message.syscallCount:
      return { type: 'syscallCount', pid: asPid(r.u32()), tid: asTid(r.u32()), nr: r.u32(), calls: r.u32(), errors: r.u32(), timeNs: r.u64() };
    default:
      throw new ProtocolError(`unknown tracer message type ${type}`);
  }
}

/** Builds one frame: u32 length, then the body. `kinds`, when given,
 * records the kind of each field written. */
class FrameWriter {
  private parts: Buffer[] = [];
  constructor(private readonly kinds?: FieldKind[]) {}
  private field(kind: FieldKind, size: number, write: (b: Buffer) => void): this {
    const b = Buffer.alloc(size);
    write(b);
    this.kinds?.push(kind);
    this.parts.push(b);
    return this;
  }
  u8(v: number): this { return this.field('u8', 1, (b) => b.writeUInt8(v)); }
  u32(v: number): this { return this.field('u32', 4, (b) => b.writeUInt32LE(v)); }
  u64(v: bigint): this { return this.field('u64', 8, (b) => b.writeBigUInt64LE(v)); }
  str(s: string): this {
    const bytes = Buffer.from(s, 'utf8');
    return this.field('str', 4, (b) => b.writeUInt32LE(bytes.length)).bytes(bytes);
  }
  /** Raw bytes, as a str field. */
  raw(bytes: Buffer): this {
    return this.field('str', 4, (b) => b.writeUInt32LE(bytes.length)).bytes(bytes);
  }
  strings(list: string[]): this {
    this.u32(list.length);
    for (const s of list) this.str(s);
    return this;
  }
  private bytes(b: Buffer): this { this.parts.push(b); return this; }
  frame(): Buffer {
    const body = Buffer.concat(this.parts);
    if (body.length > MAX_FRAME) throw new ProtocolError('command too large for the tracer');
    const head = Buffer.alloc(4);
    head.writeUInt32LE(body.length);
    return Buffer.concat([head, body]);
  }
}

/** u8 shim_mode, u32 slot_count, u32 slot_bytes, str shim_path, str shim_socket, str trap (mode 0: none). */
function injectFields(w: FrameWriter, q: InjectRequest | undefined): FrameWriter {
  if (!q) return w.u8(0).u32(0).u32(0).str('').str('').raw(Buffer.alloc(0));
  return w.u8(shimModeNumbers[q.mode]).u32(q.slotCount).u32(q.slotBytes).str(q.shimPath).str(q.shimSocket).raw(q.trap ?? Buffer.alloc(0));
}

/** u32 nrules, then each rule's fields (TLSD_CMD_RULES). */
function ruleFields(w: FrameWriter, rules: readonly CompiledRule[]): FrameWriter {
  w.u32(rules.length);
  for (const r of rules) {
    w.u32(r.id).raw(r.set).u32(r.tids.length);
    for (const tid of r.tids) w.u32(tid);
    w.str(r.path).raw(r.pathArgs).u8(r.fault).u64(BigInt.asUintN(64, r.value)).u8(r.signal)
      .u32(r.delayEnterUs).u32(r.delayExitUs).u32(r.first).u32(r.last).u32(r.step).u8(r.trace ? 1 : 0).u8(r.shim ? 1 : 0);
  }
  return w;
}

export function encodeCommand(c: TracerCommand, kinds?: FieldKind[]): Buffer {
  const w = new FrameWriter(kinds).u8(Command[c.type]).u32(c.req);
  switch (c.type) {
    case 'attach': return w.u32(c.pid).frame();
    case 'spawn': return ruleFields(injectFields(w.str(c.path).strings(c.argv).strings(c.env).str(c.cwd).str(c.stdout).str(c.stderr), c.inject).u8(c.killWithDaemon ? 1 : 0), c.rules ?? []).frame();
    case 'rules': return ruleFields(w.u32(c.pid), c.rules).frame();
    case 'counts': return w.u32(c.pid).frame();
    case 'handoff': return w.u32(c.pid).frame();
    case 'inject': return injectFields(w.u32(c.pid), c).frame();
    case 'tidy': return w.u32(c.pid).str(c.shimPath).frame();
    case 'engine': return w.u32(c.pid).str(c.shimPath).raw(c.trap).frame();
    case 'detach': return w.u32(c.pid).u8(c.kill ? 1 : 0).u8(c.keepChildren ? 1 : 0).frame();
    case 'refresh': return w.u32(c.tid).frame();
    case 'shim': return w.u32(c.pid).u64(c.table).frame();
    case 'settle': {
      w.u32(c.pid).u32(c.threadPointers.size);
      for (const [tid, fsBase] of c.threadPointers) w.u32(tid).u64(fsBase);
      return w.frame();
    }
  }
}

/** Splits a byte stream into frame bodies. */
export class FrameSplitter {
  private pending: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): Buffer[] {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const bodies: Buffer[] = [];
    let at = 0;
    while (this.pending.length - at >= 4) {
      const size = this.pending.readUInt32LE(at);
      if (size === 0 || size > MAX_FRAME) throw new ProtocolError(`bad tracer frame length ${size}`);
      if (this.pending.length - at - 4 < size) break;
      bodies.push(this.pending.subarray(at + 4, at + 4 + size));
      at += 4 + size;
    }
    this.pending = this.pending.subarray(at);
    return bodies;
  }
}
