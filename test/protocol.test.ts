/* The daemon's side of the tracer protocol and of wait statuses. */
import test from 'ava';
import { decodeMessage, encodeCommand, FrameSplitter, ProtocolError } from '../daemon/tracer/protocol.js';
import { decodeWaitStatus } from '../daemon/wait-status.js';
import { asPid } from '../daemon/types.js';

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
    t.deepEqual(bodies.map(decodeMessage).map((m) => m.type === 'threadGone' && [m.tid, m.waitStatus]), [[11, 1280], [10, 9]]);
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
