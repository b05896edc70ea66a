import type { FastifyRequest } from 'fastify';
import type { AuthenticatedRequest } from '../auth/principal';
import { fingerprint, sameBodyFingerprints, userPrincipal } from './idempotency-key';
import type { IdempotencyScope, StoredResponse } from './idempotency.repository';

/** What a request with Idempotency-Key `key` is scoped to: its principal, key, route and body. */
export function requestScope(request: AuthenticatedRequest, key: string): IdempotencyScope {
  const own = fingerprint(request.body);
  return {
    principal: request.user ? userPrincipal(request.user.userId) : `ip:${request.ip}`,
    key,
    method: request.method,
    route: canonicalRoute(request),
    fingerprint: own,
    sameBody: sameBodyFingerprints(own),
  };
}

/** Same principal and key already hold it; the same route, method and body make it the same request. */
export const sameRequest = (scope: IdempotencyScope, stored: StoredResponse): boolean =>
  scope.sameBody.includes(stored.fingerprint) &&
  stored.route === scope.route &&
  stored.method === scope.method;

/**
 * The route a request is scoped to: the matched pattern with its parameters filled in as the
 * router decoded them, in lower case — a route's only variable segments are UUIDs, lower-cased
 * for the handler too (UuidParamPipe) — so /orders/ABC…/cancel, /orders/abc…/cancel and the same
 * with any character percent-encoded (%2D, %6F) are one request, as they are to the handler.
 * The raw path when no route matched.
 */
function canonicalRoute(request: Pick<FastifyRequest, 'url' | 'params' | 'routeOptions'>): string {
  const pattern = request.routeOptions?.url;
  if (!pattern) return request.url.split('?')[0].toLowerCase();
  const params = (request.params ?? {}) as Record<string, string | undefined>;
  return pattern
    .replace(/:(\w+)/g, (_, name: string) => encodeURIComponent(params[name] ?? ''))
    .toLowerCase();
}
