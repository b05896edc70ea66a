import type { CanActivate } from '@nestjs/common';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host';
import type { FastifyReply, FastifyRequest, preParsingHookHandler } from 'fastify';
import type { IncomingMessage } from 'node:http';
import { PassThrough } from 'node:stream';
import { PinoLogger } from 'nestjs-pino';
import type { Logger } from 'pino';
import { bearerToken } from '../common/http/bearer-token';
import type { AuthenticatedRequest, Principal } from '../auth/principal';
import { sendProblem } from '../common/errors/problem-details.filter';
import { markRateLimitsCounted } from '../common/throttling/rate-limit.guard';
import type { BrowserHeaders } from '../common/http/browser-security';
import type { FirstRequestHook } from '../common/http/first-request-hooks';
import { CheckoutSoldOutGuard, fastPathKey, markJudged } from './checkout-sold-out.guard';
import { OrdersController } from './orders.controller';

/** The route, exactly (a query string goes the normal path: the route takes none, 400). */
const CHECKOUT_URL = '/v1/orders';
/** Bodies larger than this go the normal path unread (a one-line checkout is ~70 bytes). */
export const FAST_BODY_LIMIT = 4096;
/** The content types whose bodies the route's own JSON parser reads as they are. */
const JSON_TYPE = /^application\/json(; ?charset=utf-8)?$/i;

/** The body the first hook read from the socket, handed to Fastify's parser (preParsing). */
const READ_BODY = Symbol('checkout body read by the first request hook');
type WithReadBody = FastifyRequest & { [READ_BODY]?: Buffer };

export interface SoldOutCheckoutDeps {
  /** The decision, the same code as the route's guard. */
  decision: Pick<CheckoutSoldOutGuard, 'soldOutRefusal' | 'stillRefused' | 'counted'>;
  /** The access-token guard's verification (JwtStrategy: signature, claims, revoked session). */
  authenticate: (token: string) => Promise<Principal>;
  /** The global rate-limit guards, in their order (each skips itself when rate limiting is off). */
  rateLimits: CanActivate[];
  /** CORS and security headers: this hook answers before the hooks that add them run. */
  browserHeaders: BrowserHeaders;
}

/**
 * The sold-out fast path at the very front (issue 14): `POST /v1/orders` refused from the
 * adapter's first request hook, ahead of Nest's middleware (the request logger), guards,
 * interceptors and pipes, when every product of the checkout is known to be sold out.
 *
 * Only the plainest requests are judged here — no query, a bearer token, an Idempotency-Key, a
 * JSON body of at most FAST_BODY_LIMIT bytes with a Content-Length — and everything else goes
 * the normal path untouched. For those, the hook reads the body itself (onRequest runs before
 * Fastify reads it) and gives the bytes back to Fastify's parser through `preParsing`, so a
 * request it lets through is parsed, validated and answered exactly as if it had not looked.
 *
 * Then:
 * - the decision, in the guard's own code and order: first the body and the sold-out marks in
 *   Redis (CheckoutSoldOutGuard#soldOutRefusal); nothing to refuse → the normal path, marked as
 *   judged so the guard does not ask again (and the token is left to the access-token guard,
 *   which verifies it anyway);
 * - authentication, before anything else is asked or answered: the access-token guard's own
 *   JwtStrategy (pinned algorithm, issuer, audience, expiry, the access-token claims, the
 *   revoked-session check); a token it refuses goes the normal path, which answers 401 the
 *   same way;
 * - the rate limits: the global ClientRateLimitGuard and UserRateLimitGuard themselves, run
 *   with the route's metadata, so a refusal counts against the same Redis counters, carries
 *   the same RateLimit headers, and a client over a limit gets the same 429 — before the key's
 *   question, which such a client never joins;
 * - then the key, for the verified user, and the marks once more (CheckoutSoldOutGuard#stillRefused,
 *   a database read): a key that holds something, or products no longer all sold out, go the
 *   normal path, marked as judged and as counted (its guards do not count it again);
 * - the answer: the filter's 409 INSUFFICIENT_STOCK problem (sendProblem), with the request
 *   id, CORS and security headers, the fast path's metric, and pino-http's completion line
 *   when the log level writes one (the metrics' onResponse hook runs for it as for any answer).
 */
export function soldOutCheckoutHooks(deps: SoldOutCheckoutDeps): {
  onRequest: FirstRequestHook;
  preParsing: preParsingHookHandler;
} {
  const onRequest: FirstRequestHook = (request, reply, done) => {
    if (request.method !== 'POST' || request.url !== CHECKOUT_URL) return done();
    const started = Date.now();
    const { headers } = request;
    const token = bearerToken(headers.authorization);
    const key = fastPathKey(request);
    const length = Number(headers['content-length']);
    if (
      token === null ||
      key === undefined ||
      !JSON_TYPE.test(headers['content-type'] ?? '') ||
      !(length > 0 && length <= FAST_BODY_LIMIT) ||
      headers['transfer-encoding'] !== undefined ||
      headers['content-encoding'] !== undefined ||
      headers.expect !== undefined
    ) {
      return done();
    }
    readBody(request.raw, (bytes) => {
      (request as WithReadBody)[READ_BODY] = bytes;
      if (bytes.length !== length) return done(); // the parser answers as usual
      let body: unknown;
      try {
        body = JSON.parse(bytes.toString('utf8'));
      } catch {
        return done();
      }
      judge(request, reply, { token, key, body, started }, deps).then(
        (answered) => {
          if (!answered) done();
        },
        () => {
          if (!reply.sent) done();
        },
      );
    });
  };

  const preParsing: preParsingHookHandler = (request, _reply, payload, done) => {
    const bytes = (request as WithReadBody)[READ_BODY];
    if (bytes === undefined) return done(null, payload);
    (request as WithReadBody)[READ_BODY] = undefined;
    const replay = new PassThrough();
    replay.end(bytes);
    done(null, replay);
  };

  return { onRequest, preParsing };
}

/** True when this hook answered; false: the normal path takes the request. */
async function judge(
  request: FastifyRequest,
  reply: FastifyReply,
  { token, key, body, started }: { token: string; key: string; body: unknown; started: number },
  deps: SoldOutCheckoutDeps,
): Promise<boolean> {
  // The products first: most checkouts are not of sold-out products, and they go on to the
  // access-token guard, which verifies the token anyway. Only a refusal needs it verified here.
  const refusal = await deps.decision.soldOutRefusal(body);
  if (!refusal) {
    markJudged(request);
    return false;
  }
  let principal: Principal;
  try {
    principal = await deps.authenticate(token);
  } catch {
    return false; // the access-token guard refuses it the same way
  }
  // the rate limits before the key's question: a client over a limit gets its 429 here, as the
  // normal path's guards would give it first, and never joins the batched key question
  (request as AuthenticatedRequest).user = principal;
  const context = new ExecutionContextHost(
    [request, reply, undefined],
    OrdersController,
    OrdersController.prototype.create,
  );
  let answer: unknown = refusal;
  // the body as the parser will make it (the limits ask whether it repeats a request whose
  // answer the key holds: its fingerprint); Fastify's parser sets it again on the normal path
  request.body = body;
  try {
    for (const guard of deps.rateLimits) await guard.canActivate(context);
  } catch (err) {
    answer = err; // 429 RATE_LIMITED (or a fail-closed policy's refusal), as the guard's
  } finally {
    request.body = undefined;
  }
  if (answer === refusal && !(await deps.decision.stillRefused(principal.userId, key, body))) {
    // the normal path replays or refuses by the key (or finds the stock a release gave back
    // while the key was asked about); its guards do not count the request again
    markRateLimitsCounted(request);
    (request as AuthenticatedRequest).user = undefined;
    markJudged(request);
    return false;
  }
  deps.browserHeaders(reply, request.headers.origin);
  void reply.header('X-Request-Id', request.id);
  if (answer === refusal) deps.decision.counted(refusal);
  logCompletion(request, reply, started);
  sendProblem(answer, request, reply);
  return true;
}

/** Reads a request body to its end (or until the client goes); the bytes that arrived. */
function readBody(raw: IncomingMessage, then: (bytes: Buffer) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    raw.off('data', onData);
    then(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
  };
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    size += chunk.length;
  };
  raw.on('data', onData);
  raw.once('end', finish);
  raw.once('error', finish);
  raw.once('close', finish);
}

/**
 * pino-http's "request completed" line (at info and below: the level at which its middleware,
 * which this answer never reaches, writes one), from its own logger and serializers.
 */
function logCompletion(request: FastifyRequest, reply: FastifyReply, started: number): void {
  const root = PinoLogger.root as Logger | undefined;
  if (!root?.isLevelEnabled('info')) return;
  reply.raw.once('finish', () => {
    root
      .child({ requestId: request.id, req: request.raw })
      .info({ res: reply.raw, responseTime: Date.now() - started }, 'request completed');
  });
}
