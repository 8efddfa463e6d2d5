/* Raw HTTP for tests that must send what no client would (malformed JSON,
 * odd headers), to the daemon's socket or its TCP listener. */
import http from 'node:http';

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
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The parsed body when it is JSON. */
  json: any;
}

export function rawRequest(target: Target, req: RawRequest): Promise<RawResponse> {
  const payload = req.body === undefined ? undefined : Buffer.from(typeof req.body === 'string' ? req.body : JSON.stringify(req.body));
  return new Promise((resolve, reject) => {
    const r = http.request({
      ...target, method: req.method, path: req.url,
      headers: { ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}), ...req.headers },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    // The server may answer (413) and close before the whole body is sent.
    r.on('error', reject);
    r.end(payload);
  });
}
