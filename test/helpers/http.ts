/* Raw HTTP/1.1 for tests that must send what no client would (malformed
 * JSON, odd headers, bodies over the limit), to the daemon's socket or its
 * TCP listener.
 *
 * Written on a bare socket rather than with node:http, which cannot hold
 * back a body until the server has had its say (LARGE_BODY below). */
import type { IncomingHttpHeaders } from 'node:http';
import net from 'node:net';

/* A body larger than a socket's buffer is still being written when the
 * server answers and closes (a 413); the write then fails, and node stops
 * reading what the server sent. Such bodies wait for "100 Continue". */
const LARGE_BODY = 64 * 1024;
const CONTINUE_GRACE_MS = 2000;
const CONTINUE = /^HTTP\/1\.1 100 Continue\r\n\r\n/;

export type Target = { socketPath: string } | { host: string; port: number };

export interface RawRequest {
  method: string;
  url: string;
  /** An object is sent as JSON; a string as it is. */
  body?: unknown;
  headers?: Record<string, string>;
}

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** The parsed body when it is JSON. */
  json: any;
}

export function rawRequest(target: Target, req: RawRequest): Promise<RawResponse> {
  const body = req.body === undefined ? undefined : Buffer.from(typeof req.body === 'string' ? req.body : JSON.stringify(req.body));
  const headers: Record<string, string> = {
    host: 'localhost', connection: 'close',
    ...(body ? { 'content-type': 'application/json', 'content-length': String(body.length) } : {}),
    ...req.headers,
  };
  const large = body !== undefined && body.length > LARGE_BODY;
  if (large) headers.expect = '100-continue';
  const head = `${req.method} ${req.url} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
  return new Promise((resolve, reject) => {
    const socket = 'socketPath' in target ? net.connect(target.socketPath) : net.connect(target.port, target.host);
    const chunks: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      // The server's early close (after its answer) is not a failure.
      if (e.code !== 'EPIPE' && e.code !== 'ECONNRESET') reject(e);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(parse(Buffer.concat(chunks)));
      } catch (e) {
        reject(e);
      }
    });
    if (!large) {
      socket.write(body ? Buffer.concat([Buffer.from(head), body]) : head);
      return;
    }
    // A large body waits for the server's word: an early final answer (a
    // 413) means it is never sent; after "100 Continue" it is sent unless a
    // final answer follows within CONTINUE_GRACE_MS.
    socket.write(head);
    socket.on('data', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      clearTimeout(timer);
      if (text.replace(CONTINUE, '').startsWith('HTTP/')) return;
      if (CONTINUE.test(text)) timer = setTimeout(() => socket.write(body!), CONTINUE_GRACE_MS);
    });
  });
}

function parse(answer: Buffer): RawResponse {
  const interim = CONTINUE.exec(answer.toString('latin1'));
  const raw = interim ? answer.subarray(interim[0].length) : answer;
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`no HTTP answer: ${JSON.stringify(raw.toString('latin1').slice(0, 200))}`);
  const [statusLine, ...lines] = raw.subarray(0, end).toString('latin1').split('\r\n');
  const headers: IncomingHttpHeaders = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let payload = raw.subarray(end + 4);
  if (headers['transfer-encoding'] === 'chunked') payload = dechunk(payload);
  const text = payload.toString('utf8');
  let json: unknown;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: Number(statusLine!.split(' ')[1]), headers, text, json };
}

function dechunk(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', at);
    const size = parseInt(data.subarray(at, lineEnd).toString('latin1'), 16);
    if (!size) return Buffer.concat(parts);
    parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
}
