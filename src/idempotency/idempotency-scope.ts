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

/** A UUID in any case: the handlers' UuidParamPipe takes it in lower case. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The route a request is scoped to: the matched pattern with its parameters filled in as the
 * router decoded them — a UUID in lower case, as UuidParamPipe hands it to the handler — so
 * /orders/ABC…/cancel, /orders/abc…/cancel and the same with any character percent-encoded
 * (%2D, %6F) are one request, as they are to the handler. Any other parameter is kept as it
 * came: a case-sensitive id (a payment intent's) in another case is another resource, and was
 * answered with the first one's stored response. The raw path when no route matched.
 */
function canonicalRoute(request: Pick<FastifyRequest, 'url' | 'params' | 'routeOptions'>): string {
  const pattern = request.routeOptions?.url;
  if (!pattern) return request.url.split('?')[0].toLowerCase();
  const params = (request.params ?? {}) as Record<string, string | undefined>;
  return pattern.replace(/:(\w+)/g, (_, name: string) => {
    const value = params[name] ?? '';
    return encodeURIComponent(UUID.test(value) ? value.toLowerCase() : value);
  });
}
