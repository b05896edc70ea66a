import type { FastifyInstance } from 'fastify';
import { CatalogCache } from './catalog-cache';

/** Public catalog GETs whose answers are cached under their URL (see CatalogController). */
const CACHEABLE = /^\/v1\/(products(\/[0-9a-f-]{36})?|categories)(\?|$)/i;

/**
 * The fast path for cache hits: before the Nest pipeline runs (guards, interceptors, pipes,
 * logging middleware), answer a cacheable public GET straight from Redis. A miss, or Redis being
 * down, falls through to the normal route, which validates, builds and stores the answer. Only
 * successful answers are ever stored, so a hit is always something the route itself returned.
 */
export function registerCachedReads(fastify: FastifyInstance, cache: CatalogCache): void {
  fastify.addHook('onRequest', async (request, reply) => {
    if (request.method !== 'GET' || !CACHEABLE.test(request.url)) return;
    const hit = await cache.peek(request.url);
    if (hit === null) return;
    return reply.type('application/json; charset=utf-8').send(hit);
  });
}
