import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppConfig, isLoopbackHost } from '../../config/config';
import { DomainError } from '../errors/domain-error';
import { sendProblem } from '../errors/problem-details.filter';
import { earlyBrowserHeaders } from './browser-security';

/** Where a password is exchanged for tokens. */
const SIGN_IN_ROUTE = '/v1/auth/login';

/** Headers a proxy in front of this process adds: a request carrying one came through it. */
const FORWARDING_HEADERS = ['forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-real-ip'];

/**
 * A development instance on loopback — the published demo accounts' passwords sign in there, and
 * with the built-in JWT_SECRET anyone signs an admin token — takes credentials and sign-ins only
 * from requests made on this machine directly: not through a proxy (a forwarding header), nor
 * under a name that is not this machine's (the Host header: a page of another site whose name a
 * DNS rebinding pointed at 127.0.0.1). Listening on loopback alone was no bound: `npm start`
 * (which makes NODE_ENV development when it is unset) behind a reverse proxy on the same server
 * was public, its demo admin signing in and forged admin tokens accepted. A proxy that rewrites
 * Host to this machine and adds no forwarding header (nginx's `proxy_pass` as it comes) cannot be
 * told from a local client: the README says so. Off with TRUST_PROXY (a proxy of the operator's:
 * development then refuses the built-in key — loadConfig — and takes no demo password —
 * PasswordHasher) and outside development. A first request hook (setFirstRequestHooks), ahead
 * of every route and fast path (routing is done by then: `routeOptions`).
 */
export function developmentLocalOnly(
  config: Pick<AppConfig, 'isDevelopment' | 'http'>,
): ((request: FastifyRequest, reply: FastifyReply, done: () => void) => void) | undefined {
  if (!config.isDevelopment || config.http.trustProxy !== false) return undefined;
  if (!isLoopbackHost(config.http.host)) return undefined; // (no demo password; its own key: loadConfig)
  return (request, reply, done) => {
    // what those secrets open: a credential (a bearer token, the queue board's Basic sign-in, a
    // webhook's signature) or a sign-in (as routed: `/v1/auth/%6cogin` and an absolute-form
    // target reach it too); the public reads, and a registration (an account of the caller's
    // own), are the same to everyone
    const credential =
      request.headers.authorization !== undefined ||
      // a Stripe event signed with the published development webhook secret
      request.headers['stripe-signature'] !== undefined ||
      request.routeOptions.url === SIGN_IN_ROUTE;
    if (!credential) return done();
    const forwarded = FORWARDING_HEADERS.some((name) => request.headers[name] !== undefined);
    // (Fastify's hostname: the Host header's, trust-proxy being off here; `[::1]` in brackets)
    if (!forwarded && isLoopbackHost(request.hostname)) return done();
    // with CORS's headers too: a browser app on an allowed origin reads the 403 (without them,
    // only an opaque network error) — this answer leaves before @fastify/cors's hook
    earlyBrowserHeaders(request, reply);
    void reply.header('X-Request-Id', request.id);
    sendProblem(
      new DomainError(
        'FORBIDDEN',
        'This development instance (demo accounts, simulated payments) takes credentials and ' +
          'sign-ins only from requests made on this machine directly (no proxy, a loopback host ' +
          'name). Behind a proxy of yours set TRUST_PROXY and a JWT_SECRET of its own, or run it ' +
          'with NODE_ENV=production.',
      ),
      request,
      reply,
    );
  };
}
