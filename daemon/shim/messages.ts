/* The shim's IPC messages (docs/shim.md "IPC"), one JSON object a line,
 * written once as schemas: the daemon checks every line a shim sends
 * against them (a shim is code in somebody else's process: what it says
 * is checked, not trusted), and test/shim-agent.test.ts checks the real
 * shim's lines against them too. native/shim/ipc.c writes them. */
import { Type, type Static } from 'typebox';
import { Value } from 'typebox/value';
import { shimModes } from '../types.js';

const Count = Type.Integer({ minimum: 0 });
const Hex = Type.String({ pattern: '^0x[0-9a-f]{1,16}$' });

/** The IPC protocol version a hello carries. */
export const SHIM_IPC_PROTOCOL = 1;

/* shim -> tlsd */
export const ShimHelloMessage = Type.Object({
  type: Type.Literal('hello'),
  protocol: Type.Literal(SHIM_IPC_PROTOCOL),
  pid: Type.Integer({ minimum: 1 }),
  shimVersion: Count,
  mode: Type.Enum(shimModes),
  table: Hex,
  slotCount: Type.Integer({ minimum: 1 }),
  slotBytes: Count,
  variables: Count,
});

export const ShimSlotMessage = Type.Object({
  type: Type.Literal('slot'),
  event: Type.Enum(['claimed', 'released']),
  slot: Count,
  tid: Count,
  key: Hex,
});

/* The in-process engine (native/shim/engine.c): the calls its filter
 * traps, once it runs; counts since the last ones, by call and by thread;
 * each traced call. */
export const ShimEngineMessage = Type.Object({
  type: Type.Literal('engine'),
  trap: Type.String({ pattern: '^[0-9a-f]{128}$' }),
});

export const ShimCallCountMessage = Type.Object({
  type: Type.Literal('sysc'), nr: Type.Integer({ minimum: 0, maximum: 511 }), calls: Count, errors: Count, timeNs: Count,
});

export const ShimThreadCountMessage = Type.Object({ type: Type.Literal('syst'), tid: Count, calls: Count, errors: Count });

export const ShimSyscallMessage = Type.Object({
  type: Type.Literal('syscall'),
  tid: Count,
  nr: Type.Integer({ minimum: 0, maximum: 511 }),
  rule: Count,
  flags: Count,
  args: Type.Array(Hex, { minItems: 6, maxItems: 6 }),
  retval: Type.Integer(),
  durationNs: Count,
  atNs: Count,
  path: Type.Optional(Type.String()),
});

/** Answers carry the id of the request they answer. */
export const ShimAnswer = Type.Union([
  Type.Object({ type: Type.Literal('pong'), id: Count }),
  Type.Object({ type: Type.Literal('rules'), id: Count }),
  Type.Object({ type: Type.Literal('lease'), id: Count }),
  Type.Object({ type: Type.Literal('counts'), id: Count, recordsDropped: Count }),
  Type.Object({ type: Type.Literal('stats'), id: Count, slotsInUse: Count, variables: Count, eventsDropped: Count }),
  Type.Object({ type: Type.Literal('error'), id: Count, message: Type.String() }),
]);

export const ShimMessage = Type.Union([
  ShimHelloMessage, ShimSlotMessage, ShimEngineMessage, ShimCallCountMessage, ShimThreadCountMessage, ShimSyscallMessage, ShimAnswer,
]);

/* tlsd -> shim */
export type ShimRequestType = 'ping' | 'stats' | 'rules' | 'lease' | 'counts';
export interface ShimRequest {
  type: ShimRequestType;
  id: number;
}

export type ShimHelloMessage = Static<typeof ShimHelloMessage>;
export type ShimSlotMessage = Static<typeof ShimSlotMessage>;
export type ShimAnswer = Static<typeof ShimAnswer>;
export type ShimEngineMessage = Static<typeof ShimEngineMessage>;
/** What the engine sends unasked. */
export type ShimEngineNews = Static<typeof ShimEngineMessage> | Static<typeof ShimCallCountMessage> | Static<typeof ShimThreadCountMessage> | Static<typeof ShimSyscallMessage>;
export type ShimMessage = Static<typeof ShimMessage>;

/** A line from a shim, if it is one of the messages above. */
export function parseShimMessage(line: string): ShimMessage | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  return Value.Check(ShimMessage, value) ? value : undefined;
}
