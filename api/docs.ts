/* GET /docs (the OpenAPI UI) and GET /docs/json (the document), generated
 * from the routes' own schemas. Registered before the routes, so that
 * @fastify/swagger sees each of them as it is added. OpenAPI 3.1, because
 * TLS values are typed with JSON Schema type arrays (api/schemas.ts). */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';

export function installDocs(app: FastifyInstance, version: string): void {
  void app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'tlsd',
        version,
        description: 'Threads, thread pointers and thread-local storage of supervised Linux processes. '
          + 'Errors are `{ "error": { "code", "message" } }`. On TCP every request needs `Authorization: Bearer <token>`.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  void app.register(swaggerUi, { routePrefix: '/docs' });
}
