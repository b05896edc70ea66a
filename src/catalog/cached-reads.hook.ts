import type { FastifyInstance } from 'fastify';
import { CatalogCache } from './catalog-cache';

/** Public catalog GETs whose answers are cached under their URL (see CatalogController). */
const CACHEABLE = /^\/v1\/(products(\/[0-9a-f-]{36})?|categories)(\?|$)/i;

/**
 * The fast path for cache hits: answer a cacheable public GET from the cache before Nest runs —
 * a Fastify request hook, ahead of Nest middleware (request logging), guards, interceptors and
 * pipes, but after the hooks added before it (request id, CORS, security headers: see
 * configureApp), so a hit carries the same headers as the route's own answer. A miss, or Redis being down, falls through to the normal
 * route, which validates, builds and stores the answer. Only successful answers are ever
 * stored, so a hit is always something the route itself returned.
 */
export function registerCachedReads(fastify: FastifyInstance, cache: CatalogCache): void {
  fastify.addHook('onRequest', (request, reply, done) => {
    if (request.method !== 'GET' || !CACHEABLE.test(request.url)) return done();
    cache.peek(request.url).then(
      (hit) => {
        if (hit === null) return done();
        void reply.header('X-Request-Id', request.id).type('application/json; charset=utf-8').send(hit);
      },
      () => done(),
    );
  });
}
