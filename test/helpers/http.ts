/* Raw HTTP/1.1 for tests that must send what no client would (malformed
 * JSON, odd headers, bodies over the limit), to the daemon's socket or its
 * TCP listener.
 *
 * Written on a bare socket rather than with node:http: a server that
 * answers 413 and closes while a large body is still being sent makes
 * node:http fail the request with EPIPE and drop the answer; here every
 * byte the server sent is read whatever became of the writing. */
import type { IncomingHttpHeaders } from 'node:http';
import net from 'node:net';

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
  const head = `${req.method} ${req.url} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
  return new Promise((resolve, reject) => {
    const socket = 'socketPath' in target ? net.connect(target.socketPath) : net.connect(target.port, target.host);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      // The server's early close (after its answer) is not a failure.
      if (e.code !== 'EPIPE' && e.code !== 'ECONNRESET') reject(e);
    });
    socket.on('close', () => {
      try {
        resolve(parse(Buffer.concat(chunks)));
      } catch (e) {
        reject(e);
      }
    });
    socket.write(head);
    if (body) socket.write(body);
  });
}

function parse(raw: Buffer): RawResponse {
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
