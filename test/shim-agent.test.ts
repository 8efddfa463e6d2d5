/* The shim's side of its IPC (docs/shim.md "IPC"), spoken to by the test
 * instead of a daemon: the hello, one slot event per claim, and answers to
 * requests however their JSON is spaced or ordered; a malformed request
 * gets an error, and the agent serves on. */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { packageRoot } from '../daemon/paths.js';
import { fixturePath, killPid } from './helpers/fixture.js';

const shim = path.join(packageRoot, 'native', 'shim', 'build', 'libtlsshim.so');
const WORKERS = 2;

/** Lines of JSON from one connection, one at a time. */
class Lines {
  private buffered = '';
  private waiting: Array<(line: Record<string, unknown>) => void> = [];
  private ready: Array<Record<string, unknown>> = [];
  constructor(socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffered += chunk;
      for (let nl = this.buffered.indexOf('\n'); nl >= 0; nl = this.buffered.indexOf('\n')) {
        const line = JSON.parse(this.buffered.slice(0, nl)) as Record<string, unknown>;
        this.buffered = this.buffered.slice(nl + 1);
        const w = this.waiting.shift();
        if (w) w(line); else this.ready.push(line);
      }
    });
  }
  next(): Promise<Record<string, unknown>> {
    const line = this.ready.shift();
    return line ? Promise.resolve(line) : new Promise((resolve) => this.waiting.push(resolve));
  }
}

test('the agent: hello, slot events, and requests in any JSON spacing and order', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tlsd-agent-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socketPath = path.join(dir, 'shim.sock');
  const connected = new Promise<net.Socket>((resolve) => {
    const server = net.createServer((socket) => { server.close(); resolve(socket); });
    server.listen(socketPath);
  });
  const host = spawn(fixturePath(path.join('glibc-dynamic', 'shim-host')), ['thread-pointer', String(WORKERS), 'hold'], {
    env: { ...process.env, LD_PRELOAD: shim, TLSSHIM_MODE: 'thread-pointer', TLSSHIM_SOCKET: socketPath },
    stdio: 'ignore',
  });
  t.teardown(() => killPid(host.pid!));
  const socket = await connected;
  t.teardown(() => socket.destroy());
  const lines = new Lines(socket);

  t.like(await lines.next(), { type: 'hello', protocol: 1, pid: host.pid, mode: 'thread-pointer', slotCount: 4096, slotBytes: 1024 });
  for (let i = 0; i < WORKERS + 1; i++) t.like(await lines.next(), { type: 'slot', event: 'claimed' });

  socket.write(' { "id" : 7 , "type" : "ping" }\n');
  t.deepEqual(await lines.next(), { type: 'pong', id: 7 });
  socket.write('{"type":"stats","id":8,"from":"a newer daemon","n":3}\n');
  t.like(await lines.next(), { type: 'stats', id: 8, slotsInUse: WORKERS + 1, variables: 3, eventsDropped: 0 });
  socket.write('{"type":"reboot","id":9}\n');
  t.deepEqual(await lines.next(), { type: 'error', id: 9, message: 'unknown request' });
  for (const junk of ['{"type":"ping"', 'ping', '{"id":10}', '{"type":"ping","id":-1}', '{"type":"p\\"ing"}']) {
    socket.write(`${junk}\n`);
    t.deepEqual(await lines.next(), { type: 'error', id: 0, message: 'malformed request' }, junk);
  }
  socket.write('{"type":"ping","id":11}\n');
  t.deepEqual(await lines.next(), { type: 'pong', id: 11 }, 'it serves on after junk');
});
