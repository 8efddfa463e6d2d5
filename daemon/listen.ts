/* The daemon's Unix socket (DESIGN.md "HTTP API v1"): directory 0700,
 * socket 0600, a stale socket file from a dead daemon removed, a live
 * one left alone. */
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';

function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(socketPath);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

export async function listenOnSocket(app: FastifyInstance, socketPath: string): Promise<void> {
  const dir = path.dirname(socketPath);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  let existing;
  try { existing = lstatSync(socketPath); } catch { /* none */ }
  if (existing) {
    if (!existing.isSocket()) throw new Error(`${socketPath} exists and is not a socket`);
    if (await answers(socketPath)) throw new Error(`another tlsd is listening on ${socketPath}`);
    unlinkSync(socketPath);
  }
  await app.listen({ path: socketPath });
  chmodSync(socketPath, 0o600);
}
