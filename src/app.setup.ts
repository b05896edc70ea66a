import { NestFactory } from '@nestjs/core';
import { logDenied, logRefusedCommand, logUnserved } from './common/logging/command-log';
import { watchAbortedRequests } from './common/logging/aborted-requests';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyRequest } from 'fastify';
import { Logger } from 'nestjs-pino';
import { AppModule } from './app.module';
import { APP_CONFIG, AppConfig } from './config/config';
import { ProblemDetailsFilter } from './common/errors/problem-details.filter';
import { InFlightTracker } from './common/http/in-flight';
import { ReadRerunInterceptor } from './database/read-rerun.interceptor';
import { genReqId } from './common/http/request-id';
import { createValidationPipe } from './common/http/validation';
import { UnreadInputGuard } from './common/http/unread-input.guard';
import {
  API_BODY_LIMIT,
  clientErrorHandler,
  frameworkErrors,
  limitBodies,
  MAX_HEADER_LINES,
  refuseExpectation,
  refuseConnect,
  endWaitingTunnels,
  holdAfterRefusal,
  holdRefusedRequest,
  refuseWhileClosing,
  refuseMalformedHead,
  routableTarget,
} from './common/http/request-limits';
import {
  RefusedWebhooks,
  stripeSignatureFirst,
  webhookPrecheck,
} from './payments/webhook-precheck';
import { RATE_LIMIT_POLICIES } from './common/throttling/rate-limit.policies';
import { WebhooksService } from './payments/webhooks.service';
import { ImagesService } from './catalog/images.service';
import { mountOpenApi } from './openapi/openapi';
import { MetricsListener } from './metrics/metrics-listener';
import { MetricsService } from './metrics/metrics.service';
import { CatalogCache } from './catalog/catalog-cache';
import { cachedReadsHook } from './catalog/cached-reads.hook';
import { setFirstRequestHooks } from './common/http/first-request-hooks';
import {
  ClientRateLimitGuard,
  UserRateLimitGuard,
  countOutsideNest,
} from './common/throttling/rate-limit.guard';
import { JwtStrategy } from './auth/jwt.strategy';
import { CheckoutSoldOutGuard } from './orders/checkout-sold-out.guard';
import { soldOutCheckoutHooks } from './orders/sold-out-checkout.hook';
import { registerBrowserSecurity } from './common/http/browser-security';
import { answerMethodNotAllowed, methodNotAllowedRoute } from './common/http/method-not-allowed';
import { bootLogger } from './common/logging/boot-logger';
import { TransactionHost } from './database/transaction-host';
import { isDraining } from './common/shutdown';
import { warnUntrustedForwarding } from './common/http/untrusted-forwarding';
import { developmentLocalOnly } from './common/http/development-local-only';
import { isApiClusterWorker, shareMetricsWithPrimary } from './api-cluster';

/** How long past SHUTDOWN_TIMEOUT_MS a close waits for running handlers before cutting the connections left (the forced exit comes 5 s after it). */
const CUT_AFTER_HANDLERS_MS = 4_000;
/** How long after the last handler returned the connections left are cut (its answer is written meanwhile). */
const LAST_ANSWER_GRACE_MS = 500;

/** A request that carries credentials (any Authorization) or asks for tokens (the auth routes). */
function holdsCredentials(request: FastifyRequest): boolean {
  return (
    request.headers.authorization !== undefined ||
    (request.routeOptions.url?.startsWith('/v1/auth/') ?? false)
  );
}

export function createFastifyAdapter(config: AppConfig): FastifyAdapter {
  return new FastifyAdapter({
    genReqId,
    trustProxy: config.http.trustProxy,
    bodyLimit: API_BODY_LIMIT, // the webhooks' routes: WEBHOOK_BODY_LIMIT (limitBodies)
    // a request arriving while the server closes: refuseWhileClosing answers it as problem+json
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // slow clients (a request announced and then trickled, or never finished) get 408 and lose
    // the connection instead of holding it. Node checks every connectionsCheckingInterval and,
    // were the headers' limit the longer one, would apply it to the whole request.
    requestTimeout: config.http.requestTimeoutMs,
    // and a connection on which nothing moves (a client that stopped reading its answers: a full
    // TCP window held the socket, and its buffered answer, for good) is closed
    connectionTimeout: config.http.socketTimeoutMs,
    http: {
      // both at creation: Node refuses a headers limit above its default request limit (300 s)
      requestTimeout: config.http.requestTimeoutMs,
      headersTimeout: config.http.headersTimeoutMs,
      connectionsCheckingInterval: Math.min(1_000, Math.floor(config.http.headersTimeoutMs / 2)),
      // answered by refuseMalformedHead instead: problem+json with a request id, not Node's empty 400
      requireHostHeader: false,
    },
    // a path parameter over 100 characters (414), a malformed URL (400), headers over 16 KB
    // (431): problem+json too
    frameworkErrors,
    clientErrorHandler,
    rewriteUrl: routableTarget,
  });
}

/**
 * Applies everything production applies to an HTTP app: pipes, filter, request id header,
 * CORS and security headers,
 * metrics (served on METRICS_PORT, not here), OpenAPI (when DOCS_ENABLED), draining on close.
 * Tests call this too, so they exercise the same stack.
 */
async function configureApp(app: NestFastifyApplication): Promise<void> {
  app.useLogger(app.get(Logger));
  // Node keeps a request's first MAX_HEADER_LINES header lines (unset: 1,000) and dropped the rest
  // unseen — a second Authorization or Host line, an Idempotency-Key, the Content-Type and
  // Content-Length (the body then read as absent) — and the request went on without them. A
  // request that reaches the cap is refused instead (431, refuseMalformedHead): no line goes unseen, and
  // the work a head costs stays bounded (the 16 KB limit counts names and values, not line ends:
  // 16,000 empty lines fit in it).
  app.getHttpAdapter().getInstance().server.maxHeadersCount = MAX_HEADER_LINES;
  app.useGlobalPipes(createValidationPipe());
  // after the APP_GUARDs (rate limits, authentication, permissions): unknown query, unread body → 400
  app.useGlobalGuards(new UnreadInputGuard());
  app.useGlobalFilters(new ProblemDetailsFilter());
  const inFlight = new InFlightTracker();
  // (a read's second run inside the in-flight count: shutdown waits for it too)
  app.useGlobalInterceptors(inFlight, new ReadRerunInterceptor());

  const metrics = app.get(MetricsService);
  const config = app.get<AppConfig>(APP_CONFIG);
  const fastify = app.getHttpAdapter().getInstance();
  // a request whose connection closed before its answer ended: counted (the onResponse hook
  // below never runs for it) and logged once per client and window (watchAbortedRequests)
  const aborted = metrics.counter(
    'http_requests_aborted_total',
    'Requests whose connection closed before their answer was sent, by method and route template',
    ['method', 'route'],
  );
  // (the connections cut at the end of a shutdown, closeAllConnections below: not the clients')
  let connectionsCut = false;
  fastify.addHook(
    'onRequest',
    watchAbortedRequests(
      (labels) => aborted.inc(labels),
      () => connectionsCut,
    ),
  );
  fastify.addHook('onRequest', async (request, reply) => {
    void reply.header('X-Request-Id', request.id);
  });
  fastify.addHook('preHandler', holdRefusedRequest);
  limitBodies(app);
  // Swagger UI and its document, served outside Nest, counted as the guard counts any route of no
  // scope (CORS preflights are not counted: registerBrowserSecurity says why)
  const countRequest = countOutsideNest(app.get(ClientRateLimitGuard));
  const browserHeaders = await registerBrowserSecurity(app, config);
  // after the security and CORS headers' hooks: a 405 carries them too (a browser app reads it)
  const allowedMethods = answerMethodNotAllowed(fastify);
  // the webhooks' signature and token, as far as the headers tell, before their bodies are read
  // (after the security headers' hook: its headers are on these answers too)
  // (those refused counted per client against the default policy's numbers, per process, under
  // a name of their own — not the guards' Redis counter of `default`: RefusedWebhooks)
  const images = app.get(ImagesService);
  const defaultPolicy = RATE_LIMIT_POLICIES.find((p) => p.name === 'default');
  const refusedWebhooks =
    config.rateLimitEnabled && defaultPolicy
      ? new RefusedWebhooks({ ...defaultPolicy, name: 'refused-webhooks' })
      : undefined;
  fastify.addHook(
    'onRequest',
    webhookPrecheck((authorization) => images.checkToken(authorization), refusedWebhooks),
  );
  // and Stripe's HMAC over the raw body before any parser looks at it
  const webhooks = app.get(WebhooksService);
  fastify.addHook(
    'preParsing',
    stripeSignatureFirst((raw, signature) => webhooks.signed(raw, signature), refusedWebhooks),
  );
  // ahead of Nest middleware and of the hooks above: they put those hooks' headers on their
  // own answers
  const strategy = app.get(JwtStrategy);
  const soldOut = soldOutCheckoutHooks({
    decision: app.get(CheckoutSoldOutGuard),
    authenticate: (token) => strategy.verifyAccess(token),
    rateLimits: [app.get(ClientRateLimitGuard), app.get(UserRateLimitGuard)],
    browserHeaders,
  });
  fastify.addHook('preParsing', soldOut.preParsing);
  // a request the shop could not serve (503) gives back its hits of the day's budgets
  // (a callback hook: no promise made for the other answers, every cached read among them)
  const userLimits = app.get(UserRateLimitGuard);
  fastify.addHook('onResponse', (request, reply, done) => {
    if (reply.statusCode === 503) void userLimits.giveBackUnserved(request);
    done();
  });
  fastify.server.on('checkExpectation', refuseExpectation);
  fastify.server.on('connect', refuseConnect(allowedMethods, config.http.socketTimeoutMs));
  // a client that sends its request and then closes its side (a shutdown(SHUT_WR), as `nc -N`
  // and some HTTP/1.0 clients do) still gets its answer: Node aborted the request and ended
  // the connection with nothing written (a checkout made, its 201 never sent). The connection
  // ends after that answer; the request and idle timeouts bound it as any other.
  // (Node's own switch for it, undocumented but Node's http server reads it since 0.x; the test
  // in test/security/bad-input.test.ts fails should it ever go)
  (fastify.server as { httpAllowHalfOpen?: boolean }).httpAllowHalfOpen = true;
  // While shutting down, answer in-flight requests with Connection: close so keep-alive
  // sockets do not hold the process open after their last response; refuse new ones.
  let closing = false;
  const { shutdownTimeoutMs } = config.http;
  fastify.addHook('preClose', async () => {
    closing = true;
    // Node's server.close() ends idle connections only, and stops the checks that enforce the
    // header and request timeouts: a connection mid-request (headers trickled a byte a minute, a
    // body uploaded slowly) held the close until its socket timeout — the process was then
    // force-exited with code 1, its pools and lock sessions never closed. After the timeout, once
    // no handler runs (or CUT_AFTER_HANDLERS_MS more), what is left is cut: no handler of its
    // ran, and the close — Nest's shutdown hooks after it — finishes before the forced exit.
    const cut = setTimeout(() => {
      // (a moment after the last handler returns: its answer is still on its way to the socket)
      void inFlight.waitForIdle(CUT_AFTER_HANDLERS_MS).then(() =>
        setTimeout(() => {
          connectionsCut = true;
          fastify.server.closeAllConnections();
          endWaitingTunnels();
        }, LAST_ANSWER_GRACE_MS).unref(),
      );
    }, shutdownTimeoutMs).unref();
    // (the server closed — its last connection ended — has nothing left to cut: the timer would
    // keep this application in memory for SHUTDOWN_TIMEOUT_MS, in a process that goes on)
    fastify.server.once('close', () => clearTimeout(cut));
  });
  const localOnly = developmentLocalOnly(config);
  setFirstRequestHooks(app.getHttpAdapter() as unknown as FastifyAdapter, [
    holdAfterRefusal,
    refuseWhileClosing(() => closing, browserHeaders),
    refuseMalformedHead,
    ...(localOnly ? [localOnly] : []),
    warnUntrustedForwarding(),
    cachedReadsHook(app.get(CatalogCache), {
      rateLimitEnabled: config.rateLimitEnabled,
      browserHeaders,
    }),
    soldOut.onRequest,
  ]);

  fastify.addHook('onSend', async (request, reply) => {
    // (from the signal on: during SHUTDOWN_DELAY_MS keep-alive clients and TCP-level balancers
    // move to another instance instead of reusing a socket that will be closed under them)
    if (closing || isDraining()) void reply.header('connection', 'close');
    // an answer to a request with credentials, or one handing out tokens, is kept by no cache
    // (a browser's disk, a proxy): RFC 6749 5.1 for token answers, the same for a customer's data
    if (holdsCredentials(request) && !reply.hasHeader('cache-control'))
      void reply.header('cache-control', 'no-store');
  });
  // After the server stops accepting: let handlers and transactions still running (even for
  // clients that hung up) finish before the pools close.
  const transactions = app.get(TransactionHost).open;
  fastify.addHook('onClose', async () => {
    await inFlight.waitForIdle(shutdownTimeoutMs);
    await transactions.waitForIdle(shutdownTimeoutMs);
  });
  // the command line of a command refused before any handler (LoggingInterceptor writes the
  // others); at warn, where there are no access or command lines, a 5xx still gets one; a 403
  // FORBIDDEN is a security event (warn)
  const commandLines = ['info', 'debug', 'trace'].includes(config.logLevel);
  fastify.addHook('onResponse', async (request, reply) => {
    // (a 405: the pattern its path matched under another method)
    const route = request.routeOptions.url ?? methodNotAllowedRoute(request) ?? 'unmatched';
    metrics.observeHttp(request.method, route, reply.statusCode, reply.elapsedTime / 1000);
    if (commandLines) logRefusedCommand(request, reply);
    else logUnserved(request, reply);
    logDenied(request, reply);
  });

  if (config.docsEnabled)
    mountOpenApi(app, { persistAuthorization: config.isDevelopment, count: countRequest });
  await app.init();
  // one of several API processes: the primary serves their metrics together (api-cluster.ts)
  if (isApiClusterWorker()) shareMetricsWithPrimary(metrics.registry);
  else await app.get(MetricsListener).listen(config.metricsPort);
}

export async function createApp(
  config: AppConfig,
  module = AppModule.register(config),
): Promise<NestFastifyApplication> {
  const app = await NestFactory.create<NestFastifyApplication>(
    module,
    createFastifyAdapter(config),
    // until nestjs-pino's logger is there: JSON lines too, also when the boot fails; a failure
    // while the modules are created is thrown to the caller (main.ts exits with its code: a
    // refused DATABASE_URL's EXIT_CONFIG), not ended by Nest with exit code 1
    {
      bufferLogs: true,
      rawBody: true,
      logger: bootLogger(config.logLevel),
      abortOnError: false,
    },
  );
  await configureApp(app);
  return app;
}
