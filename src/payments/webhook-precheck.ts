import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import { DomainError } from '../common/errors/domain-error';
import { sendProblem } from '../common/errors/problem-details.filter';
import { SIGNATURE_TOLERANCE_SECONDS } from './webhooks.service';

const STRIPE_ROUTE = '/v1/webhooks/stripe';
const STORAGE_ROUTE = '/v1/webhooks/storage';

/** `t=<unix seconds>` and at least one `v1=<hex HMAC>`, as Stripe sends them. */
function stripeSignatureProblem(header: string | string[] | undefined, nowSeconds: number): string | null {
  if (typeof header !== 'string' || header.length > 1024) return 'missing';
  const items = header.split(',').map((item) => item.trim().split('='));
  const t = items.find(([k]) => k === 't')?.[1];
  if (!t || !/^\d{1,12}$/.test(t)) return 'no timestamp';
  if (!items.some(([k, v]) => k === 'v1' && !!v && /^[0-9a-f]{64}$/.test(v))) return 'no v1 signature';
  if (nowSeconds - Number(t) > SIGNATURE_TOLERANCE_SECONDS) return 'stale';
  return null;
}

/**
 * The webhooks are public and take bodies up to 1 MB; their checks (the Stripe signature over the
 * raw body, the store's bearer token) are guards, which run only after the body has been read
 * and parsed. What can be judged from the headers is judged here, before the body is read:
 * a Stripe-Signature that is missing, malformed or stale (API.md: refused "before anything is
 * parsed"), and the store's token, checked in full (`checkStorageToken`, constant time). Same
 * answer as the guards: 400 WEBHOOK_SIGNATURE_INVALID. A well-formed, fresh signature still has
 * its HMAC verified by StripeSignatureGuard over the raw bytes.
 */
export function webhookPrecheck(checkStorageToken: (authorization: string | undefined) => void): onRequestHookHandler {
  return (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    if (request.method !== 'POST') return done();
    const route = request.routeOptions.url;
    try {
      if (route === STRIPE_ROUTE) {
        const problem = stripeSignatureProblem(request.headers['stripe-signature'], Math.floor(Date.now() / 1000));
        if (problem) throw new DomainError('WEBHOOK_SIGNATURE_INVALID', 'The Stripe-Signature is invalid or stale.');
      } else if (route === STORAGE_ROUTE) {
        checkStorageToken(request.headers.authorization);
      }
    } catch (err) {
      sendProblem(err, request, reply);
      return;
    }
    done();
  };
}
