/* Bearer-token authentication for the TCP listener (docs/api.md
 * v1"). The Unix socket is guarded by its file mode instead; only
 * connections accepted by the TCP server are asked for the token, and
 * every request on them is, before its body is read. */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { TlsdError } from '../daemon/errors.js';

const TOKEN_BYTES = 32;

/** Reads the token, or creates the file (32 random bytes, hex, mode 0600)
 * when there is none. A token file others can read is refused, as ssh
 * refuses such a key. */
export function loadOrCreateToken(file: string): string {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  let fd: number;
  try {
    fd = openSync(file, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    return readToken(file);
  }
  try {
    writeSync(fd, randomBytes(TOKEN_BYTES).toString('hex') + '\n');
  } finally {
    closeSync(fd);
  }
  return readToken(file);
}

function readToken(file: string): string {
  const fd = openSync(file, 'r');
  try {
    const mode = fstatSync(fd).mode & 0o777;
    if (mode & 0o077) throw new Error(`token file ${file} has mode ${mode.toString(8)}; it must be readable by its owner only (chmod 600)`);
    const token = readFileSync(fd, 'utf8').trim();
    if (token.length < 16) throw new Error(`token file ${file} holds no token of at least 16 characters`);
    return token;
  } finally {
    closeSync(fd);
  }
}

/** Compares digests so that neither the contents nor the length of the
 * token leaks through timing. */
function sameToken(given: string, expected: Buffer): boolean {
  return timingSafeEqual(createHash('sha256').update(given).digest(), expected);
}

/** Connections of `server` (the TCP listener) must carry the token. */
export class TokenGuard {
  private readonly guarded = new WeakSet<Socket>();
  private readonly expected: Buffer;

  constructor(token: string) {
    this.expected = createHash('sha256').update(token).digest();
  }

  guard(server: Server): void {
    server.on('connection', (socket: Socket) => this.guarded.add(socket));
  }

  install(app: FastifyInstance): void {
    app.addHook('onRequest', async (request, reply) => {
      if (!this.guarded.has(request.raw.socket)) return;
      reply.header('www-authenticate', 'Bearer realm="tlsd"');
      const header = request.headers.authorization ?? '';
      const match = /^Bearer (\S+)$/i.exec(header);
      if (!match) throw new TlsdError('UNAUTHORIZED', 'this listener needs "Authorization: Bearer <token>" (the token is in TLSD_TOKEN_FILE)');
      if (!sameToken(match[1]!, this.expected)) throw new TlsdError('UNAUTHORIZED', 'wrong token');
    });
  }
}
