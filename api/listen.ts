/* Where the API listens (docs/api.md).
 *
 * The Unix socket, always: socket 0600 in a directory 0700, or 0660 in a
 * directory 0710 for one group (TLSD_SOCKET_GROUP). Its path is claimed
 * first (daemon/socket-file.ts: a stale socket file from a dead daemon is
 * removed, a live one left alone), before the daemon starts tracing.
 *
 * TCP, only when asked: a second HTTP server on the same routes, every
 * request of which needs the bearer token (auth.ts). A non-loopback
 * address needs an explicit allowRemote. */
import { chmodSync, chownSync, mkdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { TokenGuard } from './auth.js';

/** A group name or number, from /etc/group (Node has no getgrnam). */
export function groupId(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined) return Number(gid);
  }
  throw new Error(`no group ${group} in /etc/group`);
}

/** The socket's directory, made before anything listens in it (the shims'
 * socket lives there too, shimSocketPath). Only a directory tlsd creates gets its mode
 * and group: an existing one (say /tmp) is the administrator's. */
export function prepareSocketDirectory(socketPath: string, gid?: number): void {
  const dir = path.dirname(socketPath);
  const created = mkdirSync(dir, { recursive: true, mode: 0o700 }) !== undefined;
  if (created && gid !== undefined) {
    chownSync(dir, -1, gid);
    chmodSync(dir, 0o710);
  }
}

/** Where a daemon's shims connect: beside its API socket and named after
 * it, so that daemons whose sockets share a directory never share this. */
export function shimSocketPath(socketPath: string): string {
  const { dir, name } = path.parse(socketPath);
  return path.join(dir, `${name}-shim.sock`);
}

/** In a directory prepareSocketDirectory made ready, on a path claimed
 * with claimSocketPath (a path that exists now is refused, EADDRINUSE). */
export async function listenOnSocket(app: FastifyInstance, socketPath: string, gid?: number): Promise<void> {
  await app.listen({ path: socketPath });
  if (gid !== undefined) chownSync(socketPath, -1, gid);
  chmodSync(socketPath, gid === undefined ? 0o600 : 0o660);
}

export interface TcpAddress { host: string; port: number }

/** `127.0.0.1:7878`, `[::1]:7878`, `localhost:7878`. */
export function parseHostPort(text: string): TcpAddress {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (!m || port < 1 || port > 65535) throw new Error(`"${text}" is not HOST:PORT`);
  return { host: (m[1] ?? m[2])!, port };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (net.isIPv4(host) && host.startsWith('127.'));
}

/** Serves the app's routes on TCP too. The app must be ready (listening
 * on its socket). Closing the returned server is the caller's. */
export async function listenOnTcp(app: FastifyInstance, address: TcpAddress, guard: TokenGuard): Promise<http.Server> {
  const server = http.createServer(app.routing);
  guard.guard(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => { server.off('error', reject); resolve(); });
  });
  return server;
}
