import FindMyWay, { HTTPMethod } from 'find-my-way';
import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify';
import { DomainError } from '../errors/domain-error';
import { closeIfBodyPending } from './request-limits';

/** The methods a route can be asked for here (what `Allow` may name). */
const METHODS: readonly HTTPMethod[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

const noop = (): void => undefined;

/** The route pattern of each request answered 405 here (its path's, under another method). */
const patterns = new WeakMap<FastifyRequest, string>();

/**
 * The route pattern a request answered 405 matched under another method (`/v1/products/:id`),
 * for its metrics' `route` label: Fastify matched it to no route, and it was counted as
 * `unmatched` beside every scan of random paths.
 */
export function methodNotAllowedRoute(request: FastifyRequest): string | undefined {
  return patterns.get(request);
}

/**
 * Routes this check leaves alone: one that answers any path below it (CORS's `OPTIONS *`, a
 * static folder's `/docs/*`: they say nothing about which paths exist), and a plugin's under its
 * prefix (the queue board answers its own, after its sign-in; Fastify tells no `onRoute` of
 * the second spelling it adds for a prefix's root, so its methods would be named wrong).
 */
const notKnown = (route: RouteOptions & { prefix?: string }): boolean =>
  route.url.includes('*') || (route.prefix ?? '') !== '';

/**
 * A path that exists, asked for with a method it has no route for (`DELETE /v1/products`), is a
 * 405 with `Allow` naming the methods it has (RFC 9110 15.5.6), not the 404 Fastify's router
 * answers: a client generated from the document learns its call is wrong, not that the
 * resource is gone. A second router holds every route's pattern (with Fastify's own matching
 * rules: the same library, its defaults) and is asked only for a request no route matched.
 * Registered before the routes are. Returns that router's answer (the methods a target's path
 * has, none for a target that is not a path), for the 405 of a request no route sees: CONNECT.
 */
export function answerMethodNotAllowed(
  fastify: FastifyInstance,
): (url: string) => readonly HTTPMethod[] {
  const known = FindMyWay();
  fastify.addHook('onRoute', (route: RouteOptions) => {
    if (notKnown(route)) return;
    for (const method of [route.method].flat() as HTTPMethod[]) {
      if (METHODS.includes(method) && !known.hasRoute(method, route.url))
        known.on(method, route.url, noop, { pattern: route.url });
    }
  });
  // as Nest's adapter routes: a parameter matched empty (`/v1/products/`) is no match; the
  // pattern of the route matched, if any
  const routeOf = (method: HTTPMethod, url: string): string | undefined => {
    const found = known.find(method, url);
    return found !== null &&
      Object.entries(found.params).every(([name, value]) => value !== '' || name === '*')
      ? (found.store as { pattern: string }).pattern
      : undefined;
  };
  // (a target not starting with `/`, an absolute form, is a 404 whatever its method)
  const allowedMethods = (url: string): readonly HTTPMethod[] =>
    url.startsWith('/') ? METHODS.filter((method) => routeOf(method, url) !== undefined) : [];
  // (a callback hook: it runs for every request, and all but a few pass at the first test)
  fastify.addHook('onRequest', (request, reply, done) => {
    if (!request.is404) return done();
    const allowed = allowedMethods(request.raw.url ?? '');
    // no such path (a 404), or one this very method has (Nest's 404 for another reason)
    if (allowed.length === 0 || allowed.includes(request.method as HTTPMethod)) return done();
    // (one more lookup, for a 405 only: its path's pattern for the metrics)
    const pattern = routeOf(allowed[0], request.raw.url ?? '');
    if (pattern !== undefined) patterns.set(request, pattern);
    closeIfBodyPending(request, reply); // answered unread: none of a body is read after it
    done(
      new DomainError(
        'METHOD_NOT_ALLOWED',
        `${request.method} is not allowed here; this path answers ${allowed.join(', ')}.`,
        {
          headers: { Allow: allowed.join(', ') },
        },
      ),
    );
  });
  return allowedMethods;
}
