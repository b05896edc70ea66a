import { Logger } from '@nestjs/common';
import { storage } from 'nestjs-pino/storage';
import { AsyncResource } from 'node:async_hooks';
import { Readable } from 'node:stream';
import type {
  FastifyReply,
  FastifyRequest,
  onRequestHookHandler,
  preParsingHookHandler,
} from 'fastify';
import { DomainError } from '../common/errors/domain-error';
import { sendProblem } from '../common/errors/problem-details.filter';
import { WEBHOOK_BODY_LIMIT, closeIfBodyPending } from '../common/http/request-limits';
import { InFlightBodies } from '../common/http/in-flight-bodies';
import { printableForLog } from '../common/logging/printable';
import { clientOf } from '../catalog/cached-reads.hook';
import { LocalRateLimiter } from '../catalog/cached-reads.limiter';
import { policyHeaderItem, stateHeaderItem } from '../common/throttling/rate-limit.policies';
import { SIGNATURE_TOLERANCE_SECONDS } from './webhooks.service';

const STRIPE_ROUTE = '/v1/webhooks/stripe';
const STORAGE_ROUTE = '/v1/webhooks/storage';
const security = new Logger('Security');

/**
 * A webhook refused for its signature or token is a security event (warn): a prober, or a
 * `STRIPE_WEBHOOK_SECRET` / `STORAGE_WEBHOOK_TOKEN` rotated wrongly — every genuine delivery then
 * fails here, and the provider's retries are the only other sign. Why (`missing`, `stale`,
 * `signature mismatch`, `token`…) and from where. Bounded by the refusals' own per-client limit
 * (RefusedWebhooks): past it, requests are refused unread and unlogged.
 */
function logRefusedWebhook(request: FastifyRequest, reason: string): void {
  storage.exit(() =>
    security.warn(
      {
        event: 'webhook_refused',
        route: request.routeOptions.url,
        reason,
        // (X-Forwarded-For's, behind a proxy: printable ASCII only, as every logged address)
        client: printableForLog(request.ip),
        requestId: request.id,
      },
      'webhook_refused',
    ),
  );
}

/** One `t=<unix seconds>` and at least one `v1=<hex HMAC>`, as Stripe sends them. */
function stripeSignatureProblem(
  header: string | string[] | undefined,
  nowSeconds: number,
): string | null {
  if (typeof header !== 'string' || header.length > 1024) return 'missing';
  const items = header.split(',').map((item) => item.trim().split('='));
  // one: the SDK verifies the HMAC against the last, and a fresh one put before a signature dated
  // a month ahead had this check judge the fresh one
  const stamps = items.filter(([k]) => k === 't');
  if (stamps.length > 1) return 'several timestamps';
  const t = stamps[0]?.[1];
  if (!t || !/^\d{1,12}$/.test(t)) return 'no timestamp';
  if (!items.some(([k, v]) => k === 'v1' && !!v && /^[0-9a-f]{64}$/.test(v)))
    return 'no v1 signature';
  // stale, or dated ahead by more than the same tolerance (Stripe's SDK checks only the age: a
  // header signed with a clock far ahead, or with a leaked secret, would stay good until its date)
  if (Math.abs(nowSeconds - Number(t)) > SIGNATURE_TOLERANCE_SECONDS) return 'stale';
  return null;
}

/**
 * The webhooks are public and take bodies up to 1 MB; their checks (the Stripe signature over the
 * raw body, the store's bearer token) are guards, which run only after the body has been read
 * and parsed. What can be judged from the headers is judged here, before the body is read:
 * a Stripe-Signature that is missing, malformed, stale or dated more than the tolerance ahead
 * (API.md: refused "before anything is parsed"), and the store's token, checked in full (`checkStorageToken`, constant time). Same
 * answer as the guards: 400 WEBHOOK_SIGNATURE_INVALID. A well-formed, fresh signature still has
 * its HMAC verified by StripeSignatureGuard over the raw bytes.
 */
export function webhookPrecheck(
  checkStorageToken: (authorization: string | undefined) => void,
  refusals?: RefusedWebhooks,
): onRequestHookHandler {
  return (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    if (request.method !== 'POST') return done();
    const route = request.routeOptions.url;
    if (route !== STRIPE_ROUTE && route !== STORAGE_ROUTE) return done();
    const over = refusals?.over(request, reply);
    if (over) {
      closeIfBodyPending(request, reply); // refused unread
      sendProblem(over, request, reply);
      return;
    }
    let reason = 'token';
    try {
      if (route === STRIPE_ROUTE) {
        const problem = stripeSignatureProblem(
          request.headers['stripe-signature'],
          Math.floor(Date.now() / 1000),
        );
        if (problem) {
          reason = problem;
          throw new DomainError(
            'WEBHOOK_SIGNATURE_INVALID',
            'The Stripe-Signature is invalid or stale.',
          );
        }
      } else if (route === STORAGE_ROUTE) {
        checkStorageToken(request.headers.authorization);
      }
    } catch (err) {
      logRefusedWebhook(request, reason);
      refusals?.count(request);
      closeIfBodyPending(request, reply); // refused unread: its body is not read after it either
      sendProblem(err, request, reply);
      return;
    }
    done();
  };
}

/**
 * Webhook requests refused for their signature or token, counted per client IP in this process
 * (LocalRateLimiter) against the numbers of the per-IP `default` policy: their checks run
 * before the guards, so neither the webhooks' own budget (`webhook-ip`, 6,000 a minute, for
 * the provider's few addresses) nor any other counted them, and a client could make the server
 * read up to 1 MB and compute an HMAC per request without end. Past the limit, a client's
 * webhook requests are refused with 429 RATE_LIMITED (Retry-After) before their bodies are read,
 * until its window resets. A correctly signed request spends nothing here. With N API processes,
 * N× the limit; `RATE_LIMIT_ENABLED=false` switches it off.
 */
export class RefusedWebhooks {
  private readonly limiter: LocalRateLimiter;
  private readonly trackers = new Map<string, string>();
  private readonly policyHeader: string;

  constructor(
    private readonly policy: { name: string; limit: number; windowSeconds: number },
    private readonly now: () => number = () => performance.now(),
  ) {
    // (nothing else counts these: a client the table had no room for was never refused)
    this.limiter = new LocalRateLimiter(policy.limit, policy.windowSeconds * 1000, 'evict');
    this.policyHeader = policyHeaderItem(policy.name, policy.limit, policy.windowSeconds);
  }

  /** A refusal counted against the client. */
  count(request: FastifyRequest): void {
    this.limiter.take(clientOf(request, this.trackers), this.now());
  }

  /** The 429 for a client over the limit (its headers put on the reply); null otherwise. */
  over(request: FastifyRequest, reply?: FastifyReply): DomainError | null {
    const state = this.limiter.peek(clientOf(request, this.trackers), this.now());
    if (!state?.blocked) return null;
    void reply
      ?.header('RateLimit-Policy', this.policyHeader)
      .header('RateLimit', stateHeaderItem(this.policy.name, 0, state.resetSeconds));
    return new DomainError('RATE_LIMITED', 'Too many refused webhook requests; retry later.', {
      headers: { 'Retry-After': String(state.resetSeconds) },
    });
  }
}

/**
 * Stripe's HMAC over the raw bytes, before any parser sees them (API.md: a bad signature is
 * refused "before anything is parsed or stored"): the body of `POST /v1/webhooks/stripe` is read
 * here (up to WEBHOOK_BODY_LIMIT; a declared larger one is left to the parser's 413, unread), its
 * signature verified, and only a signed body handed on — to the JSON parser, whose content-type,
 * charset and shape checks (415, 400) an unsigned caller therefore never reaches, and to
 * StripeSignatureGuard, which verifies it again and builds the event.
 */
export function stripeSignatureFirst(
  signed: (raw: Buffer, signature: string) => boolean,
  refusals?: RefusedWebhooks,
  bodies: WebhookBodies = new WebhookBodies(),
): preParsingHookHandler {
  return (request, reply, payload, next) => {
    if (request.method !== 'POST' || request.routeOptions.url !== STRIPE_ROUTE)
      return next(null, payload);
    if (Number(request.headers['content-length']) > WEBHOOK_BODY_LIMIT) return next(null, payload);
    // the request goes on from the body's events, run in the connection's async context: bound
    // to the request's, or everything it logs on its way — the command line, a query that
    // failed — lost the request's logger and with it its requestId
    const done = AsyncResource.bind(next);
    const signature = request.headers['stripe-signature'];
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    // the bytes this body holds in memory, until it has been judged or its connection has gone
    const client = bodies.clientOf(request);
    let held = 0;
    const release = () => {
      bodies.give(client, held);
      held = 0;
    };
    request.raw.once('close', release);
    // the provider sends a few kilobytes at once: a body still arriving after this is a client
    // holding memory (WebhookBodies), refused and its connection closed
    const deadline = setTimeout(() => {
      if (!settled)
        refuse(new DomainError('REQUEST_TIMEOUT', 'The request was not received in time.'));
    }, WEBHOOK_BODY_DEADLINE_MS);
    deadline.unref();
    const refuse = (error: DomainError) => {
      settled = true;
      clearTimeout(deadline);
      release();
      payload.removeAllListeners('data');
      // a body refused before its end (past WEBHOOK_BODY_LIMIT, chunked) closes the connection
      // after the answer: drained to keep it alive, an endless one was read at line rate until
      // the request timeout
      closeIfBodyPending(request, reply);
      payload.resume(); // what arrives until then is read and dropped; the answer goes out now
      // and the request goes no further: `done` is not called (its onSend hooks still running,
      // the reply does not count as sent yet, and the parser's own refusal would overwrite it)
      sendProblem(error, request, reply);
    };
    payload.on('data', (chunk: Buffer) => {
      if (settled) return;
      size += chunk.length;
      if (size > WEBHOOK_BODY_LIMIT) {
        refuse(new DomainError('PAYLOAD_TOO_LARGE', 'The request body is too large.'));
        return;
      }
      const over = bodies.take(client, chunk.length);
      if (over) {
        refuse(over);
        return;
      }
      held += chunk.length;
      chunks.push(chunk);
    });
    payload.once('error', (err: Error & { statusCode?: number }) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      release();
      // the client went away mid-body (Node's `aborted`): a 400, as Fastify's own body reader
      // marks it — nobody reads the answer, and it is no fault of ours to log as unhandled
      err.statusCode ??= 400;
      done(err);
    });
    payload.once('end', () => {
      if (settled) return;
      clearTimeout(deadline);
      release(); // judged now: a signed body goes on to its handler, an unsigned one is refused
      const raw = Buffer.concat(chunks, size);
      if (typeof signature !== 'string' || !signed(raw, signature)) {
        logRefusedWebhook(request, 'signature mismatch');
        refusals?.count(request);
        refuse(
          new DomainError('WEBHOOK_SIGNATURE_INVALID', 'The Stripe-Signature is invalid or stale.'),
        );
        return;
      }
      settled = true;
      // the same bytes for the parser (Fastify reads the stream's length for its body limit)
      const body = Object.assign(Readable.from([raw]), { receivedEncodedLength: size });
      done(null, body);
    });
  };
}

/**
 * How long a Stripe webhook body may take to arrive, from its headers: the provider sends its few
 * kilobytes at once. Without it, eight clients each holding four never-finished 1 MB bodies for
 * the request timeout (30 s) kept WEBHOOK_BODY_BYTES_IN_ALL full — every genuine delivery a 503 —
 * for ~1 MB/s of upload; now that takes ~6 MB/s.
 */
const WEBHOOK_BODY_DEADLINE_MS = 5_000;

/** Bytes of unjudged Stripe webhook bodies one client may hold in memory at once. */
const WEBHOOK_BODY_BYTES_PER_CLIENT = 4 * 1024 * 1024;
/** … and all clients together. */
const WEBHOOK_BODY_BYTES_IN_ALL = 32 * 1024 * 1024;

/**
 * The memory that Stripe webhook bodies hold while they are read for their signature. The route
 * is public and any well-formed, fresh Stripe-Signature gets its body (up to 1 MB) read before the
 * HMAC can be checked: 800 connections from one client, each sending all but the last byte, held
 * ~700 MB of the API's memory for the request timeout, again and again (no refusal counted them,
 * RefusedWebhooks: none ended). A client holding WEBHOOK_BODY_BYTES_PER_CLIENT is answered 429
 * for the next chunk, all together holding WEBHOOK_BODY_BYTES_IN_ALL a 503 (both with
 * Retry-After: the provider retries a delivery it was refused). The provider's events are a few
 * kilobytes: hundreds of concurrent deliveries from one of its addresses fit.
 */
export class WebhookBodies extends InFlightBodies {
  private readonly trackers = new Map<string, string>();

  constructor(clientLimit = WEBHOOK_BODY_BYTES_PER_CLIENT, totalLimit = WEBHOOK_BODY_BYTES_IN_ALL) {
    super(clientLimit, totalLimit, 'webhook bodies');
  }

  clientOf(request: FastifyRequest): string {
    return clientOf(request, this.trackers);
  }
}
