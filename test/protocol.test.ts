/* The daemon's side of the tracer protocol and of wait statuses. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { packageRoot } from '../daemon/paths.js';
import {
  Command, decodeMessage, encodeCommand, exitCalls, type FieldKind, FrameSplitter, fsSources, injectSteps, logLevels, MAX_FRAME,
  Message, origins, PROTOCOL_VERSION, ProtocolError, type TracerCommand,
} from '../daemon/tracer/protocol.js';
import { compileRule } from '../daemon/syscalls/rule.js';
import { decodeWaitStatus } from '../daemon/wait-status.js';
import { asAddress, asPid, asTid, type Tid, type Address } from '../daemon/types.js';

/* protocol.h, the protocol's one definition: its #defines, its enums, and
 * each message type's field kinds (its comment up to " -- "). */
const header = readFileSync(path.join(packageRoot, 'native', 'tracer', 'protocol.h'), 'utf8');

function define(name: string): number {
  const m = new RegExp(`#define ${name} \\(?(\\d+)u?(?: << (\\d+))?\\)?`).exec(header);
  if (!m) throw new Error(`${name} is not in protocol.h`);
  return Number(m[1]) * 2 ** Number(m[2] ?? 0);
}

/** An enum's members: name (without its prefix) -> value, and each one's
 * field kinds where its comment lists fields. */
function enumeration(name: string, prefix: string): Map<string, { value: number; kinds: FieldKind[] }> {
  const body = new RegExp(`enum ${name} \\{([\\s\\S]*?)\\n\\};`).exec(header)?.[1];
  if (!body) throw new Error(`enum ${name} is not in protocol.h`);
  const members = new Map<string, { value: number; kinds: FieldKind[] }>();
  for (const m of body.matchAll(new RegExp(`${prefix}(\\w+) = (\\d+),\\s*(?:/\\*([\\s\\S]*?)\\*/)?`, 'g'))) {
    const fields = (m[3] ?? '').split(' -- ')[0]!;
    const kinds = [...fields.matchAll(/\b(u8|u32|i32|u64|str) \w/g)].map((k) => k[1] as FieldKind);
    members.set(m[1]!.toLowerCase(), { value: Number(m[2]), kinds });
  }
  return members;
}

const snake = (camel: string) => camel.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
/** THREAD_FSBASE is threadFsBase: protocol.h's names without underscores. */
const squash = (name: string) => name.replaceAll('_', '');

test('the version, the frame limit and every enumeration are protocol.h\'s', (t) => {
  t.is(PROTOCOL_VERSION, define('TLSD_PROTOCOL_VERSION'));
  t.is(MAX_FRAME, define('TLSD_MAX_FRAME'));
  const numbers = (e: ReturnType<typeof enumeration>) => Object.fromEntries([...e].map(([k, v]) => [squash(k), v.value]));
  t.deepEqual(numbers(enumeration('tlsd_command', 'TLSD_CMD_')), Object.fromEntries(Object.entries(Command).map(([k, v]) => [squash(snake(k)), v])));
  t.deepEqual(numbers(enumeration('tlsd_message', 'TLSD_MSG_')), Object.fromEntries(Object.entries(Message).map(([k, v]) => [squash(snake(k)), v])));
  const listed = (list: readonly string[]) => Object.fromEntries(list.map((v, i) => [squash(v), i]));
  t.deepEqual(numbers(enumeration('tlsd_origin', 'TLSD_ORIGIN_')), listed(origins));
  t.deepEqual(numbers(enumeration('tlsd_fs_source', 'TLSD_FS_')), listed(fsSources));
  t.deepEqual(numbers(enumeration('tlsd_exit_call', 'TLSD_EXIT_CALL_')), listed(exitCalls));
  t.deepEqual(numbers(enumeration('tlsd_log_level', 'TLSD_LOG_')), listed(logLevels));
  t.deepEqual(numbers(enumeration('tlsd_inject_step', 'TLSD_INJECT_')), listed(injectSteps));
});

test('every message is read with the fields protocol.h lists, in order', (t) => {
  const messages = enumeration('tlsd_message', 'TLSD_MSG_');
  t.is(messages.size, Object.keys(Message).length);
  for (const [name, { value, kinds }] of messages) {
    // Zeros read as every field's zero: empty strings, the first enum value.
    const body = Buffer.alloc(1 + 8 * 16);
    body.writeUInt8(value, 0);
    const read: FieldKind[] = [];
    decodeMessage(body, read);
    t.deepEqual(read.slice(1), kinds, name);
  }
});

test('every command is written with the fields protocol.h lists, in order', (t) => {
  // One of each repeated part (argv, env, settled threads), as protocol.h
  // lists it once.
  const pid = asPid(1), tid = asTid(2), address = asAddress(3n);
  const examples: { [K in TracerCommand['type']]: Extract<TracerCommand, { type: K }> } = {
    attach: { type: 'attach', req: 1, pid },
    spawn: { type: 'spawn', req: 1, path: '/bin/true', argv: ['true'], env: ['A=1'], cwd: '/', stdout: '', stderr: '' },
    detach: { type: 'detach', req: 1, pid, kill: false, keepChildren: false },
    refresh: { type: 'refresh', req: 1, tid },
    shim: { type: 'shim', req: 1, pid, table: address },
    settle: { type: 'settle', req: 1, pid, threadPointers: new Map<Tid, Address>([[tid, address]]) },
    inject: { type: 'inject', req: 1, pid, mode: 'tid', slotCount: 0, slotBytes: 0, shimPath: '/x.so', shimSocket: '/s' },
    tidy: { type: 'tidy', req: 1, pid, shimPath: '/x.so' },
    rules: { type: 'rules', req: 1, pid, rules: [compileRule(1, { syscalls: ['openat'], tids: [2], trace: true }, () => true)] },
    counts: { type: 'counts', req: 1, pid },
    handoff: { type: 'handoff', req: 1, pid },
    engine: { type: 'engine', req: 1, pid, shimPath: '/x.so', trap: Buffer.alloc(64) },
  };
  const commands = enumeration('tlsd_command', 'TLSD_CMD_');
  t.is(commands.size, Object.keys(examples).length);
  for (const [name, { kinds }] of commands) {
    const written: FieldKind[] = [];
    encodeCommand(examples[name as TracerCommand['type']], written);
    t.deepEqual(written.slice(1), kinds, name);
  }
});

/** A THREAD_GONE frame as the tracer writes it (protocol.h). */
function threadGoneFrame(pid: number, tid: number, status: number): Buffer {
  const body = Buffer.alloc(1 + 4 + 4 + 4 + 8);
  body.writeUInt8(7, 0);
  body.writeUInt32LE(pid, 1);
  body.writeUInt32LE(tid, 5);
  body.writeInt32LE(status, 9);
  body.writeBigUInt64LE(1_700_000_000_000_000_000n, 13);
  const head = Buffer.alloc(4);
  head.writeUInt32LE(body.length);
  return Buffer.concat([head, body]);
}

test('frames split at every byte boundary decode the same', (t) => {
  const stream = Buffer.concat([threadGoneFrame(10, 11, 5 << 8), threadGoneFrame(10, 10, 9)]);
  for (let cut = 0; cut <= stream.length; cut++) {
    const splitter = new FrameSplitter();
    const bodies = [...splitter.push(stream.subarray(0, cut)), ...splitter.push(stream.subarray(cut))];
    t.deepEqual(bodies.map((b) => decodeMessage(b)).map((m) => m.type === 'threadGone' && [m.tid, m.waitStatus]), [[11, 1280], [10, 9]]);
  }
});

test('a truncated or unknown message is a protocol error, not a crash', (t) => {
  const frame = threadGoneFrame(1, 2, 0);
  t.throws(() => decodeMessage(frame.subarray(4, 10)), { instanceOf: ProtocolError });
  t.throws(() => decodeMessage(Buffer.from([99])), { instanceOf: ProtocolError });
  t.throws(() => new FrameSplitter().push(Buffer.from([0, 0, 0, 0])), { instanceOf: ProtocolError });
});

test('commands are length-prefixed frames', (t) => {
  const frame = encodeCommand({ type: 'detach', req: 7, pid: asPid(1234), kill: true, keepChildren: false });
  t.is(frame.readUInt32LE(0), frame.length - 4);
  t.deepEqual([...frame.subarray(4)], [3, 7, 0, 0, 0, 0xd2, 0x04, 0, 0, 1, 0]);
});

test('wait statuses: exit codes, signals, core dumps', (t) => {
  t.deepEqual(decodeWaitStatus(3 << 8), { code: 3 });
  t.deepEqual(decodeWaitStatus(9), { signal: 9, coreDumped: false });
  t.deepEqual(decodeWaitStatus(11 | 0x80), { signal: 11, coreDumped: true });
});
