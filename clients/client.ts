/* A typed client for the tlsd HTTP API v1 over its Unix socket. The types
 * are the server's own schemas (api/schemas.ts): one source of truth. */
import http from 'node:http';
import type { Static } from 'typebox';
import type {
  ExitJson, HealthJson, ProcessJson, SpawnBody, SymbolQuery, ThreadJson, ThreadWithTcb, TlsModule, TlsSymbol, TlsValues,
} from '../api/schemas.js';

export class TlsdError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(`${code}: ${message}`);
  }
}

export class TlsdClient {
  constructor(private readonly socketPath = process.env.TLSD_SOCKET ?? '/run/tlsd/tlsd.sock') {}

  /** One request; a non-2xx answer throws TlsdError with the API's code. */
  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = http.request({
        socketPath: this.socketPath, method, path,
        headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            return reject(new TlsdError(res.statusCode ?? 0, 'BAD_RESPONSE', text.slice(0, 200)));
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) return resolve(json as T);
          const err = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
          reject(new TlsdError(status, err?.code ?? 'UNKNOWN', err?.message ?? text));
        });
      });
      req.on('error', reject);
      req.end(payload);
    });
  }

  health() { return this.request<HealthJson>('GET', '/v1/health'); }
  processes() { return this.request<{ processes: ProcessJson[] }>('GET', '/v1/processes').then((r) => r.processes); }
  attach(pid: number) { return this.request<ProcessJson>('POST', '/v1/processes', { pid }); }
  spawn(body: Static<typeof SpawnBody>) { return this.request<ProcessJson>('POST', '/v1/processes', body); }
  process(pid: number) { return this.request<ProcessJson>('GET', `/v1/processes/${pid}`); }
  detach(pid: number, kill = false) { return this.request<ProcessJson>('DELETE', `/v1/processes/${pid}${kill ? '?kill=true' : ''}`); }
  threads(pid: number) { return this.request<{ threads: ThreadJson[] }>('GET', `/v1/processes/${pid}/threads`).then((r) => r.threads); }
  thread(pid: number, tid: number) { return this.request<Static<typeof ThreadWithTcb>>('GET', `/v1/processes/${pid}/threads/${tid}`); }
  tlsModules(pid: number) {
    return this.request<{ modules: Array<Static<typeof TlsModule>> }>('GET', `/v1/processes/${pid}/tls/modules`).then((r) => r.modules);
  }
  tlsSymbols(pid: number) {
    return this.request<{ symbols: Array<Static<typeof TlsSymbol>> }>('GET', `/v1/processes/${pid}/tls/symbols`).then((r) => r.symbols);
  }
  /** One TLS variable in every thread (or in `query.tid`). */
  readTls(pid: number, name: string, query: Static<typeof SymbolQuery> = {}) {
    const qs = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)])).toString();
    return this.request<Static<typeof TlsValues>>('GET', `/v1/processes/${pid}/tls/symbols/${encodeURIComponent(name)}${qs ? '?' + qs : ''}`);
  }
  exits(pid: number) { return this.request<{ exits: ExitJson[] }>('GET', `/v1/processes/${pid}/exits`).then((r) => r.exits); }
}
