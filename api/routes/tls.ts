import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { asAddress, asTid, formatAddress } from '../../daemon/types.js';
import type { ReadOptions } from '../../daemon/tls/tls-reader.js';
import type { ValueType } from '../../daemon/tls/values.js';
import { ErrorBody, ModuleBytesQuery, ModuleParams, ProcessParams, SymbolParams, SymbolQuery, SymbolsQuery, TlsModule, TlsSymbol, TlsValues } from '../schemas.js';
import { valuesJson } from '../serialize.js';
import type { RouteDeps } from '../server.js';

const errors = { 400: ErrorBody, 404: ErrorBody, 410: ErrorBody, 503: ErrorBody };

export const tlsRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (app, { supervisor, metrics }) => {
  app.get('/v1/processes/:pid/tls/modules', {
    schema: { summary: 'TLS modules: the program and each library with a PT_TLS segment', params: ProcessParams, response: { 200: Type.Object({ modules: Type.Array(TlsModule) }), ...errors } },
  }, async (request) => {
    const modules = await supervisor.tls.modules(request.params.pid);
    return {
      modules: modules.map((m) => ({
        id: m.id, path: m.object.path, base: formatAddress(asAddress(m.object.base)),
        tlsSize: Number(m.tls.memsz), tlsAlign: Number(m.tls.align), initSize: m.tls.filesz,
        ...(m.staticOffset !== undefined ? { staticOffset: Number(m.staticOffset) } : {}),
      })),
    };
  });

  app.get('/v1/processes/:pid/tls/symbols', {
    schema: { summary: 'TLS variables of every module', params: ProcessParams, querystring: SymbolsQuery, response: { 200: Type.Object({ symbols: Type.Array(TlsSymbol) }), ...errors } },
  }, async (request) => {
    const { match } = request.query;
    const variables = await supervisor.tls.variables(request.params.pid);
    return {
      symbols: variables.filter((v) => match === undefined || v.name.includes(match) || v.readable?.includes(match)).map((v) => ({
        name: v.name, ...(v.readable ? { readable: v.readable } : {}), module: v.module, size: v.size, ...(v.declared ? { type: v.declared.name } : {}),
        ...(v.location.kind === 'block' ? { offset: Number(v.location.offset) } : {}),
      })),
    };
  });

  app.get('/v1/processes/:pid/tls/symbols/:name', {
    schema: { summary: 'One TLS variable in every thread (or one)', params: SymbolParams, querystring: SymbolQuery, response: { 200: TlsValues, ...errors } },
  }, async (request) => {
    const { module, type, length, tid } = request.query;
    const result = await supervisor.tls.read(request.params.pid, request.params.name, {
      ...(module !== undefined ? { module } : {}), ...readOptions({ type, length, tid }),
    });
    metrics.tlsRead(result.values);
    return valuesJson(result);
  });

  app.get('/v1/processes/:pid/tls/modules/:module/bytes', {
    schema: {
      summary: 'Bytes of a module\'s TLS block at an offset, in every thread (or one): TLS without a symbol',
      params: ModuleParams, querystring: ModuleBytesQuery, response: { 200: TlsValues, ...errors },
    },
  }, async (request) => {
    const { offset, type, length, tid } = request.query;
    const result = await supervisor.tls.readModule(request.params.pid, request.params.module, offset, readOptions({ type, length, tid }));
    metrics.tlsRead(result.values);
    return valuesJson(result);
  });
};

function readOptions(q: { type?: ValueType; length?: number; tid?: number }): Omit<ReadOptions, 'module'> {
  return {
    ...(q.type !== undefined ? { type: q.type } : {}), ...(q.length !== undefined ? { length: q.length } : {}),
    ...(q.tid !== undefined ? { tid: asTid(q.tid) } : {}),
  };
}
