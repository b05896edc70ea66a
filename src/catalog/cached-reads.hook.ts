import { getMetadataStorage } from 'class-validator';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { BrowserHeaders } from '../common/http/browser-security';
import type { FirstRequestHook } from '../common/http/first-request-hooks';
import { problemBody } from '../common/errors/problem-details.filter';
import {
  RATE_LIMIT_POLICIES,
  ipTracker,
  networkTracker,
  policyHeaderItem,
  stateHeaderItem,
} from '../common/throttling/rate-limit.policies';
import { CatalogCache } from './catalog-cache';
import { catalogCacheKey } from './catalog-cache-key';
import { LocalLimitState, LocalRateLimiter } from './cached-reads.limiter';
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
 * The counter of requests no route matches (404s, 405s), under the `default` policy's numbers
 * (and `unrouted-network`, `default-network`'s, per IPv6 /48): no guard runs for them, so nothing counted them — a scanner's random paths were answered
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
 * cost more than the hit) — and for an IPv6 client its /48's companion, `default-network`, the
 * same way (`cached-reads-network`: per /64 alone, one host rotating through its /48 had 65,536
 * budgets of cached reads). Every catalog GET that reaches this hook counts (hit or miss), a
 * client over the limit gets 429 RATE_LIMITED with Retry-After, and answers carry
 * RateLimit-Policy / RateLimit headers of those counters (`cached-reads`, the `default` policy's
 * limit and window; `cached-reads-network`, `default-network`'s). A miss is counted again, in
 * Redis, by the guard on the normal route. A request no route matches is counted here too, on
 * counters of its own (UNROUTED_POLICY): no guard counts it either. With N API processes a client
 * can get up to N× the limit of cached reads; `RATE_LIMIT_ENABLED=false` switches it off like the
 * guards.
 */
export function cachedReadsHook(
  cache: CatalogCache,
  options: CachedReadsOptions,
): FirstRequestHook {
  const limits = (name: string) => (options.rateLimitEnabled ? new LocalLimits(name) : undefined);
  const cachedReads = limits(CACHED_READS_POLICY);
  const unrouted = limits(UNROUTED_POLICY);
  // windows measured on the monotonic clock: a wall clock stepped back must not stretch them
  const now = options.now ?? (() => performance.now());
  const trackers = new Map<string, string>(); // per app: its trust-proxy setting decides

  const { browserHeaders } = options;
  return (request, reply, done) => {
    if (request.routeOptions.url === undefined) {
      // no route: counted here (UNROUTED_POLICY), then answered by the not-found handler
      const counted = unrouted?.take(request, clientOf(request, trackers), now());
      if (!counted?.blocked) return done();
      browserHeaders(reply, request.headers.origin);
      return refuse(request, reply, counted);
    }
    if (request.method !== 'GET' || !answerableFromCache(request.url)) {
      return done();
    }
    let counted: Counted | undefined;
    if (cachedReads) {
      const taken = cachedReads.take(request, clientOf(request, trackers), now());
      if (taken === null) return done(); // not tracked here: the Redis-backed guard counts it
      counted = taken;
      if (counted.blocked) {
        browserHeaders(reply, request.headers.origin);
        return refuse(request, reply, counted);
      }
    }
    cache.peek(catalogCacheKey(request.url)).then(
      (hit) => {
        if (hit === null) return done();
        browserHeaders(reply, request.headers.origin);
        void reply.header('X-Request-Id', request.id);
        if (counted)
          void reply
            .header('RateLimit-Policy', counted.policyHeader)
            .header('RateLimit', counted.limitHeader);
        void reply.type('application/json; charset=utf-8').send(hit);
      },
      () => done(),
    );
  };
}

/** A request as a LocalLimits counted it: refused or not, its headers, its Retry-After. */
interface Counted {
  blocked: boolean;
  policyHeader: string;
  limitHeader: string;
  retryAfter: number;
}

const policyNamed = (name: string) => RATE_LIMIT_POLICIES.find((p) => p.name === name)!;

/**
 * A per-process counter under `name` with the `default` policy's numbers, per client (IPv6 per
 * /64), and one under `<name>-network` with `default-network`'s, per IPv6 /48 (an IPv4 client
 * has none: its address is counted already).
 */
class LocalLimits {
  private readonly clients: LocalRateLimiter;
  private readonly networks: LocalRateLimiter;
  private readonly clientPolicy: string;
  private readonly bothPolicies: string;
  private readonly networkPolicy: string;
  private readonly networkName: string;

  constructor(private readonly name: string) {
    const client = policyNamed('default');
    const network = policyNamed('default-network');
    this.networkName = `${name}-network`;
    this.clients = new LocalRateLimiter(client.limit, client.windowSeconds * 1000);
    this.networks = new LocalRateLimiter(network.limit, network.windowSeconds * 1000);
    this.clientPolicy = policyHeaderItem(name, client.limit, client.windowSeconds);
    this.networkPolicy = policyHeaderItem(this.networkName, network.limit, network.windowSeconds);
    this.bothPolicies = `${this.clientPolicy}, ${this.networkPolicy}`;
  }

  /**
   * Counts one request of `client` (the request's per-IP tracker) and of its /48; null when
   * either cannot be tracked here (a table full: the Redis-backed guard counts it instead).
   * A /48 over its limit is refused before its /64 is counted (no window opened for a /64 it
   * refuses); the /48 counts only requests its /64's own limit let through, so one /64 spends at
   * most its own share of its neighbours' budget.
   */
  take(request: FastifyRequest, client: string, now: number): Counted | null {
    // an IPv4 tracker (`ip:203.0.113.7`) has no colon past its prefix: no network, nothing parsed
    const network = client.indexOf(':', 3) === -1 ? undefined : networkTracker(request.ip);
    if (network !== undefined) {
      const spent = this.networks.peek(network, now);
      if (spent?.blocked) return one(this.networkPolicy, this.networkName, spent);
    }
    const own = this.clients.take(client, now);
    if (own === null) return null;
    if (network === undefined || own.blocked) return one(this.clientPolicy, this.name, own);
    const shared = this.networks.take(network, now);
    if (shared === null) return null;
    return {
      blocked: shared.blocked,
      policyHeader: this.bothPolicies,
      limitHeader: `${stateHeaderItem(this.name, own.remaining, own.resetSeconds)}, ${stateHeaderItem(this.networkName, shared.remaining, shared.resetSeconds)}`,
      retryAfter: shared.resetSeconds,
    };
  }
}

/** A request counted by one counter. */
function one(policyHeader: string, name: string, state: LocalLimitState): Counted {
  return {
    blocked: state.blocked,
    policyHeader,
    limitHeader: stateHeaderItem(name, state.remaining, state.resetSeconds),
    retryAfter: state.resetSeconds,
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
function refuse(request: FastifyRequest, reply: FastifyReply, counted: Counted): void {
  const body = problemBody(
    { status: 429, code: 'RATE_LIMITED', detail: 'Too many requests; retry later.' },
    request.id,
  );
  void reply
    .code(429)
    .header('X-Request-Id', request.id)
    .header('Retry-After', String(counted.retryAfter))
    .header('RateLimit-Policy', counted.policyHeader)
    .header('RateLimit', counted.limitHeader)
    .type('application/problem+json; charset=utf-8')
    .send(JSON.stringify(body));
}
