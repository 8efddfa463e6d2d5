/* What each lifecycle event says, written once: these schemas type what
 * the daemon publishes (EventBus.publish), describe the events in the
 * OpenAPI document and serialize them (api/schemas.ts), and give the
 * client its event types (clients/client.ts). docs/api.md "Events" tells
 * when each is sent. */
import { Type, type Static, type TSchema } from 'typebox';
import { exitHows, fsBaseSources, processOrigins, shimModes } from './types.js';

/** The API's JSON forms (docs/api.md "Conventions"), for these schemas and api/schemas.ts. */
export const Hex = Type.String({ pattern: '^0x[0-9a-f]+$', description: 'address, lowercase hex' });
export const Time = Type.String({ format: 'date-time' });

/** How a process or thread ended: a code, or a signal. */
export const Ending = {
  code: Type.Optional(Type.Integer()),
  signal: Type.Optional(Type.Integer()),
  coreDumped: Type.Optional(Type.Boolean()),
};

/** What a process runs, and where it came from. */
const Image = {
  pid: Type.Integer(),
  origin: Type.Enum(processOrigins),
  exe: Type.String(),
  argv: Type.Array(Type.String()),
  parentPid: Type.Optional(Type.Integer({ description: 'for a forked process: the supervised process that forked it' })),
};

export const eventData = {
  'process.attached': Type.Object({ ...Image, threads: Type.Integer() }),
  'process.spawned': Type.Object({
    ...Image,
    stdout: Type.Optional(Type.String()),
    stderr: Type.Optional(Type.String()),
  }, { description: 'a spawned process, or one forked by a supervised process (origin forked)' }),
  'thread.created': Type.Object({
    pid: Type.Integer(),
    tid: Type.Integer(),
    fsBase: Hex,
    fsBaseSource: Type.Enum(fsBaseSources),
    parentTid: Type.Optional(Type.Integer()),
  }),
  'thread.exited': Type.Object({
    pid: Type.Integer(),
    tid: Type.Integer(),
    leader: Type.Boolean(),
    exitedAt: Time,
    how: Type.Enum(exitHows),
    ...Ending,
  }),
  'process.exec': Type.Object({ pid: Type.Integer(), formerTid: Type.Integer(), exe: Type.String(), argv: Type.Array(Type.String()) }),
  'process.exited': Type.Object({ pid: Type.Integer(), ...Ending }),
  'process.detached': Type.Object({ pid: Type.Integer() }),
  'shim.handshake': Type.Object({
    pid: Type.Integer(),
    mode: Type.Enum(shimModes),
    shimVersion: Type.Integer(),
    table: Hex,
    slotCount: Type.Integer(),
    slotBytes: Type.Integer(),
  }),
  'shim.slot': Type.Object({
    pid: Type.Integer(),
    event: Type.Enum(['claimed', 'released']),
    slot: Type.Integer(),
    tid: Type.Integer(),
    key: Hex,
  }),
} satisfies Record<string, TSchema>;

export type LifecycleEventType = keyof typeof eventData;
export const lifecycleEventTypes = Object.keys(eventData) as LifecycleEventType[];
export type EventData<K extends LifecycleEventType> = Static<(typeof eventData)[K]>;
