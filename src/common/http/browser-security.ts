import helmet, { type FastifyHelmetOptions } from '@fastify/helmet';
import cors, { type FastifyCorsOptions } from '@fastify/cors';
import { Logger } from '@nestjs/common';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AppConfig } from '../../config/config';
import { DomainError } from '../errors/domain-error';
import { sendProblem } from '../errors/problem-details.filter';
import { RateLimitedLog } from '../logging/rate-limited-log';
import { quotedForLog } from '../logging/printable';

/** Response headers a browser client may read (everything else stays hidden from scripts). */
const CORS_EXPOSED_HEADERS = [
  'X-Request-Id',
  'Idempotent-Replayed',
  'Retry-After',
  'RateLimit',
  'RateLimit-Policy',
  'Allow', // a 405's
  // a 401's scheme and `error="invalid_token"` (a refresh is due, not a sign-in): a web client
  // that reads it, as RFC 6750 clients do, could not (contract review)
  'WWW-Authenticate',
];

/** Request headers a browser client may send cross-origin. */
const CORS_ALLOWED_HEADERS = ['Authorization', 'Content-Type', 'Idempotency-Key', 'X-Request-Id'];

/**
 * CORS for browser clients on other origins. Bearer tokens, not cookies: no credentials, so an
 * allowed origin cannot ride a user's ambient session. `*` only when CORS_ORIGINS says so (or
 * by default in development); outside development the default list is empty (no origin).
 */
function corsOptions(config: AppConfig): FastifyCorsOptions {
  return {
    origin: config.corsOrigins === '*' ? '*' : config.corsOrigins,
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: CORS_ALLOWED_HEADERS,
    exposedHeaders: CORS_EXPOSED_HEADERS,
    credentials: false,
    maxAge: 600,
  };
}

/**
 * Content-Security-Policy: nothing but this origin, which is what Swagger UI at /docs needs —
 * @nestjs/swagger serves its scripts (bundle, preset and the initializer swagger-ui-init.js) as
 * files, so no inline script is allowed; only inline styles (its page and React's style
 * attributes) and data: images (its CSS icons). JSON answers carry the same header, harmlessly.
 * No upgrade-insecure-requests: it would send the UI's plain-HTTP calls (local runs, TLS ended
 * at a proxy) to an https:// port nobody listens on.
 */
const CONTENT_SECURITY_POLICY = {
  useDefaults: false,
  directives: {
    defaultSrc: ["'self'"],
    baseUri: ["'self'"],
    connectSrc: ["'self'"],
    fontSrc: ["'self'", 'data:'],
    formAction: ["'self'"],
    frameAncestors: ["'none'"],
    imgSrc: ["'self'", 'data:'],
    objectSrc: ["'none'"],
    scriptSrc: ["'self'"],
    scriptSrcAttr: ["'none'"],
    styleSrc: ["'self'", "'unsafe-inline'"],
  },
};

const HELMET_OPTIONS: FastifyHelmetOptions = {
  contentSecurityPolicy: CONTENT_SECURITY_POLICY,
  // An API answer is never framed: frame-ancestors 'none' above, X-Frame-Options for old browsers
  frameguard: { action: 'deny' },
};

/** Headers of any answer, not helmet's. */
const NOT_SECURITY = new Set([
  'content-type',
  'content-length',
  'date',
  'connection',
  'keep-alive',
]);

/**
 * The headers @fastify/helmet sets with HELMET_OPTIONS, computed once at boot by asking it (a
 * throwaway Fastify instance, one injected request). They do not depend on the request, and
 * the plugin itself rebuilds helmet's middleware on every request (10–25 µs here), a large
 * share of a catalog cache hit.
 */
async function helmetHeaders(
  options: FastifyHelmetOptions = HELMET_OPTIONS,
): Promise<Record<string, string>> {
  const probe = new FastifyAdapter().getInstance();
  try {
    await probe.register(helmet, options);
    probe.get('/', (_request, reply) => reply.send(''));
    const res = await probe.inject({ method: 'GET', url: '/' });
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(res.headers)) {
      if (!NOT_SECURITY.has(name) && value !== undefined) headers[name] = String(value);
    }
    return headers;
  } finally {
    await probe.close();
  }
}

/** helmet's headers once computed (they are the same for every app of this process). */
let securityHeadersOfProcess: Record<string, string> = {};

/**
 * The security headers, for answers made before any request hook runs (Fastify's own refusals:
 * frameworkErrors). Empty until the first app registered them (registerBrowserSecurity).
 */
export function securityHeaders(): Record<string, string> {
  return securityHeadersOfProcess;
}

/** Puts the browser-security headers on an answer made before @fastify/cors and helmet's hook run. */
export type BrowserHeaders = (reply: FastifyReply, origin: string | undefined) => void;

/** Each app's BrowserHeaders, by its Fastify instance (apps of one process differ in CORS_ORIGINS). */
const browserHeadersOfServer = new WeakMap<object, BrowserHeaders>();

/** Each app's CORS headers for an Origin, by its HTTP server (for Node's own refusals). */
const corsOfHttpServer = new WeakMap<
  object,
  (origin: string | undefined) => Record<string, string>
>();

/**
 * CORS's headers for an answer written straight to a connection, before there is a request
 * object (Node's own 408 and 431: clientErrorHandler), by the server that accepted it; the
 * Origin of the request being received, when its headers were read. None until the app
 * registered them.
 */
export function rawCorsHeaders(
  server: object | undefined,
  origin: string | undefined,
): Record<string, string> {
  const corsFor = server === undefined ? undefined : corsOfHttpServer.get(server);
  return corsFor ? corsFor(origin) : {};
}

/**
 * The browser-security headers (helmet's, and CORS's for the request's Origin) on an answer
 * Fastify makes before any request hook runs (frameworkErrors: a 414, a malformed URL), or one
 * of the first request hooks makes (a malformed head, a development instance's refusal), which
 * are passed to the adapter before registerBrowserSecurity runs: looked up by the request's
 * server. Only the security headers until the app registered them.
 */
export function earlyBrowserHeaders(request: FastifyRequest, reply: FastifyReply): void {
  const headers = browserHeadersOfServer.get(request.server);
  if (headers) headers(reply, request.headers.origin);
  else void reply.headers(securityHeadersOfProcess);
}

/**
 * The headers @fastify/cors gives an actual (non-preflight) request, computed without it: for an
 * answer that leaves before its hook (the catalog cache's fast path runs ahead of Nest's
 * middleware, and so of every hook added after NestFactory.create()).
 */
function corsResponseHeaders(
  config: AppConfig,
): (origin: string | undefined) => Record<string, string> {
  const expose = CORS_EXPOSED_HEADERS.join(', ');
  if (config.corsOrigins === '*') {
    const any = { 'access-control-allow-origin': '*', 'access-control-expose-headers': expose };
    return () => any;
  }
  const allowed = new Set(config.corsOrigins);
  const none = { vary: 'Origin' };
  return (origin) =>
    origin !== undefined && allowed.has(origin)
      ? {
          'access-control-allow-origin': origin,
          'access-control-expose-headers': expose,
          vary: 'Origin',
        }
      : none;
}

/** How often, at most, a preflight from one origin CORS_ORIGINS does not list is logged. */
const REFUSED_ORIGIN_LOG_MS = 60_000;
/** How many refused origins are named within a minute; past that, they share one line. */
const REFUSED_ORIGINS_NAMED = 100;

/**
 * Says at boot, at warn, when no origin may call this instance from a browser (CORS_ORIGINS unset
 * or empty outside development: secure, but a shop front on its own domain then gets nothing),
 * and which origin a refused preflight came from — each origin once a minute at most, its
 * repeats counted (a RateLimitedLog keyed by origin): a deployment that forgot CORS_ORIGINS, or
 * listed `https://shop.example` while its customers arrive on `https://www.shop.example`, took no
 * order from its web shop while readiness, the logs and every dashboard looked fine (browser
 * review). Once a minute for all origins together let one scanner's preflight each minute hide
 * the misspelt real origin. The origin is the client's to choose: logged cut to 200 characters,
 * quoted, everything outside printable ASCII escaped (quotedForLog: a C1 control such as 0x9B
 * CSI reached the log raw), at most 100 origins named in a minute; past that, the others share
 * one line and its count.
 */
export function refusedOriginLog(config: Pick<AppConfig, 'corsOrigins'>): (origin: string) => void {
  if (config.corsOrigins === '*') return () => undefined;
  const logger = new Logger('Cors');
  if (config.corsOrigins.length === 0)
    logger.warn(
      "CORS_ORIGINS is empty: no web page on another origin (a shop front on its own domain) can call this API from a browser. Set CORS_ORIGINS to the shop front's origins, unless only apps and same-origin pages call it",
    );
  const listed = config.corsOrigins.join(', ') || 'empty';
  const allowed = new Set(config.corsOrigins);
  const log = new RateLimitedLog(REFUSED_ORIGIN_LOG_MS, REFUSED_ORIGINS_NAMED);
  const warn = (line: string) => logger.warn(line);
  return (origin) => {
    if (allowed.has(origin)) return;
    // (quoted, and every character outside printable ASCII escaped: C1 controls arrive raw)
    const shown = quotedForLog(origin.slice(0, 200));
    log.write(
      shown,
      `a preflight from origin ${shown} was refused: it is not in CORS_ORIGINS (${listed}); this origin is said once a minute at most`,
      warn,
    );
  };
}

/**
 * CORS and the helmet security headers, as Fastify request hooks (preflights are answered by
 * @fastify/cors). Returns the same headers as a function, for the one answer that leaves before
 * those hooks run: the catalog cache's fast path.
 *
 * An OPTIONS is never counted against the client's request limits, nor refused by them: a
 * refused preflight is a 429 without Access-Control-Allow-Origin, which a browser reports as a
 * network error — the web app could never read its Retry-After or RateLimit (API.md says clients
 * can) — and a preflight names no route, so the scopes spared a limit (sign-in, password change)
 * could not be spared it. The real request that follows is counted, and refused readably (its
 * answer carries the CORS headers). A preflight reads no body and asks neither the database nor
 * Redis.
 */
export async function registerBrowserSecurity(
  app: NestFastifyApplication,
  config: AppConfig,
): Promise<BrowserHeaders> {
  const headers = await helmetHeaders();
  if (!headers['content-security-policy'])
    throw new Error('helmet produced no Content-Security-Policy');
  securityHeadersOfProcess = headers;
  const fastify = app.getHttpAdapter().getInstance();
  // before @fastify/cors's hook: the answers it ends the request with (preflights) carry them too
  fastify.addHook('onRequest', (_request, reply, done) => {
    void reply.headers(headers);
    done();
  });
  // an OPTIONS that is not a CORS preflight (no Origin or no Access-Control-Request-Method):
  // refused like any other bad request, as problem+json (@fastify/cors answers text/plain)
  const refused = refusedOriginLog(config);
  fastify.addHook('onRequest', (request, reply, done) => {
    if (request.raw.method !== 'OPTIONS') return done();
    if (request.headers.origin && request.headers['access-control-request-method']) {
      refused(request.headers.origin);
      return done();
    }
    sendProblem(
      new DomainError(
        'BAD_REQUEST',
        'OPTIONS is answered only as a CORS preflight (with Origin and Access-Control-Request-Method).',
      ),
      request,
      reply,
    );
  });
  // (Not app.enableCors(): its wrapper copies all reply headers to the raw response per request.)
  await app.register(cors, corsOptions(config));
  const corsFor = corsResponseHeaders(config);
  const browserHeaders: BrowserHeaders = (reply, origin) =>
    void reply.headers(headers).headers(corsFor(origin));
  browserHeadersOfServer.set(fastify, browserHeaders);
  corsOfHttpServer.set(fastify.server, corsFor);
  return browserHeaders;
}
