import { getMetadataStorage } from 'class-validator';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { BrowserHeaders } from '../common/http/browser-security';
import type { FirstRequestHook } from '../common/http/first-request-hooks';
import { problemBody } from '../common/errors/problem-details.filter';
import {
  RATE_LIMIT_POLICIES,
  ipTracker,
  policyHeaderItem,
  stateHeaderItem,
} from '../common/throttling/rate-limit.policies';
import { CatalogCache } from './catalog-cache';
import { catalogCacheKey } from './catalog-cache-key';
import { LocalRateLimiter } from './cached-reads.limiter';
import { ListProductsDto } from './dto/catalog.dto';

/**
 * Public catalog GETs whose answers are cached under their URL (see CatalogController). The path as
 * the router matches it (case-sensitive: `/V1/CATEGORIES` is a 404 there, so never a hit here);
 * an id in either case (the route takes both: one cache key, catalogCacheKey).
 */
const CACHEABLE = /^\/v1\/(products(\/[0-9a-fA-F-]{36})?|categories)(\?|$)/;

/** The query parameters the product list accepts (its DTO's properties); other routes none. */
let listQuery: ReadonlySet<string> | undefined;
function listQueryParameters(): ReadonlySet<string> {
  listQuery ??= new Set(
    getMetadataStorage()
      .getTargetValidationMetadatas(ListProductsDto, '', true, false)
      .map((m) => m.propertyName),
  );
  return listQuery;
}

/**
 * Whether the URL's query names only parameters its route accepts. Anything else (`?cb=…`, a
 * malformed segment) is never answered from the cache: the route refuses it (400).
 */
export function onlyKnownQuery(url: string): boolean {
  const start = url.indexOf('?');
  if (start === -1) return true;
  if (!url.startsWith('/v1/products?')) return false; // detail and categories take no query
  const allowed = listQueryParameters();
  for (const segment of url.slice(start + 1).split('&')) {
    if (segment === '') continue; // dropped by the query-string parser (and the cache key)
    const end = segment.indexOf('=');
    const raw = end === -1 ? segment : segment.slice(0, end);
    let name: string;
    try {
      name = decodeURIComponent(raw.replace(/\+/g, ' '));
    } catch {
      return false;
    }
    if (!allowed.has(name)) return false;
  }
  return true;
}

/** Whether a GET of `url` may be answered from the cache (a cacheable route, known parameters). */
export function answerableFromCache(url: string): boolean {
  return CACHEABLE.test(url) && onlyKnownQuery(url);
}

export interface CachedReadsOptions {
  rateLimitEnabled: boolean;
  /** CORS and security headers: this hook answers before the hooks that add them run. */
  browserHeaders: BrowserHeaders;
  now?: () => number;
}

/**
 * The name the cached reads' own counter goes by in the RateLimit headers: it is not the Redis
 * counter of `default` the guards report on misses and every other route (the same client's
 * remaining budget jumped between the two on consecutive reads under one name).
 */
const CACHED_READS_POLICY = 'cached-reads';
/**
 * The counter of requests no route matches (404s, 405s), under the `default` policy's numbers:
 * no guard runs for them, so nothing counted them — a scanner's random paths were answered
 * without limit, each one an access line (logs review: 2.9 MB of log in 8 s from one client).
 */
const UNROUTED_POLICY = 'unrouted';

/**
 * The fast path for cache hits: answer a cacheable public GET from the cache before Nest runs —
 * one of the adapter's first request hooks (setFirstRequestHooks), ahead of Nest middleware (request
 * logging: a child logger per request would cost a third of a hit), guards, interceptors and
 * pipes, and so also ahead of the CORS and security-header hooks: a hit (or a 429) gets those
 * headers from `browserHeaders`, the same ones the route's own answer carries. A miss, or Redis
 * being down, falls through to the normal route, which validates, builds and stores the answer.
 * Only successful answers are ever stored, so a hit is always something the route itself returned.
 *
 * Rate limiting: the guards do not run here, so the hook applies the per-IP `default` policy
 * itself, counted in this process's memory (LocalRateLimiter; a Redis round trip per hit would
 * cost more than the hit). Every catalog GET that reaches this hook counts (hit or miss), a
 * client over the limit gets 429 RATE_LIMITED with Retry-After, and answers carry
 * RateLimit-Policy / RateLimit headers of that counter (`cached-reads`, the `default` policy's
 * limit and window). A miss is counted again, in Redis, by
 * the guard on the normal route, which appends its `default` item to those headers (both counters
 * are named: either may refuse the next request). A request no route matches is counted here too, on a counter of
 * its own (UNROUTED_POLICY): no guard counts it either. With N API processes a client can get up
 * to N× the limit of cached reads; `RATE_LIMIT_ENABLED=false` switches it off like the guards.
 */
export function cachedReadsHook(
  cache: CatalogCache,
  options: CachedReadsOptions,
): FirstRequestHook {
  const policy = RATE_LIMIT_POLICIES.find((p) => p.name === 'default');
  /** A per-process counter under `name`, with the `default` policy's numbers, and its header. */
  const counter = (name: string, whenFull: 'untracked' | 'evict') => ({
    limiter:
      options.rateLimitEnabled && policy
        ? new LocalRateLimiter(policy.limit, policy.windowSeconds * 1000, whenFull)
        : undefined,
    header: policy ? policyHeaderItem(name, policy.limit, policy.windowSeconds) : '',
  });
  // (a cached read the table has no room for goes through the guards; nothing else counts a
  // request no route matches)
  const { limiter, header: policyHeader } = counter(CACHED_READS_POLICY, 'untracked');
  const { limiter: unrouted, header: unroutedHeader } = counter(UNROUTED_POLICY, 'evict');
  // windows measured on the monotonic clock: a wall clock stepped back must not stretch them
  const now = options.now ?? (() => performance.now());
  const trackers = new Map<string, string>(); // per app: its trust-proxy setting decides

  const { browserHeaders } = options;
  /** This counter's headers on an answer it counted (made once per hook: none per request). */
  const nameCounter = (reply: FastifyReply, limitHeader: string | undefined) => {
    if (limitHeader)
      void reply.header('RateLimit-Policy', policyHeader).header('RateLimit', limitHeader);
  };
  return (request, reply, done) => {
    if (request.routeOptions.url === undefined) {
      // no route: counted here (UNROUTED_POLICY), then answered by the not-found handler
      const state = unrouted?.take(clientOf(request, trackers), now());
      if (!state?.blocked) return done();
      browserHeaders(reply, request.headers.origin);
      return refuse(
        request,
        reply,
        unroutedHeader,
        stateHeaderItem(UNROUTED_POLICY, state.remaining, state.resetSeconds),
        state.resetSeconds,
      );
    }
    if (request.method !== 'GET' || !answerableFromCache(request.url)) {
      return done();
    }
    let limitHeader: string | undefined;
    if (limiter && policy) {
      const state = limiter.take(clientOf(request, trackers), now());
      if (state === null) return done(); // not tracked here: the Redis-backed guard counts it
      limitHeader = stateHeaderItem(CACHED_READS_POLICY, state.remaining, state.resetSeconds);
      if (state.blocked) {
        browserHeaders(reply, request.headers.origin);
        return refuse(request, reply, policyHeader, limitHeader, state.resetSeconds);
      }
    }
    // this counter's headers on every answer it counted — a miss's too, where the route's guard
    // appends its own `default` item: a miss named only the guard's counter (298 left) and the
    // next hit was refused by this one (0 left)
    cache.peek(catalogCacheKey(request.url)).then(
      (hit) => {
        if (hit === null) {
          nameCounter(reply, limitHeader);
          return done();
        }
        browserHeaders(reply, request.headers.origin);
        void reply.header('X-Request-Id', request.id);
        nameCounter(reply, limitHeader);
        void reply.type('application/json; charset=utf-8').send(hit);
      },
      () => {
        nameCounter(reply, limitHeader);
        done();
      },
    );
  };
}

/**
 * The per-IP tracker of the `default` policy (IPv6 per /64). Behind a trusted proxy, resolving
 * `request.ip` parses X-Forwarded-For against the trust list (about a microsecond, a few
 * percent of a cache hit), and its result depends only on the socket address and that header:
 * remembered for the next request of the same client (a bounded memo, dropped when full). The
 * header is the client's to write: only a short one is remembered, so that anonymous requests
 * with long, distinct headers (up to Node's 16 KiB each) cannot pin 10,000 of them in memory.
 */
const TRACKER_MEMO = 10_000;
/** The longest memo key (socket address, `|`, X-Forwarded-For): a chain of a few hops. */
export const TRACKER_MEMO_KEY_CHARS = 256;
export function clientOf(request: FastifyRequest, trackers: Map<string, string>): string {
  const forwarded = request.headers['x-forwarded-for'];
  if (forwarded === undefined) return ipTracker(request.ip);
  const key = `${request.socket.remoteAddress ?? ''}|${String(forwarded)}`;
  if (key.length > TRACKER_MEMO_KEY_CHARS) return ipTracker(request.ip);
  let tracker = trackers.get(key);
  if (tracker === undefined) {
    tracker = ipTracker(request.ip);
    if (trackers.size >= TRACKER_MEMO) trackers.clear();
    trackers.set(key, tracker);
  }
  return tracker;
}

/** 429 RATE_LIMITED as the global filter renders it, built here: refusing must stay cheap. */
function refuse(
  request: FastifyRequest,
  reply: FastifyReply,
  policyHeader: string,
  limitHeader: string,
  retryAfter: number,
): void {
  const body = problemBody(
    { status: 429, code: 'RATE_LIMITED', detail: 'Too many requests; retry later.' },
    request.id,
  );
  void reply
    .code(429)
    .header('X-Request-Id', request.id)
    .header('Retry-After', String(retryAfter))
    .header('RateLimit-Policy', policyHeader)
    .header('RateLimit', limitHeader)
    .type('application/problem+json; charset=utf-8')
    .send(JSON.stringify(body));
}
