import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppConfig, DEV_SECRETS, isLoopbackHost } from '../../config/config';
import { DomainError } from '../errors/domain-error';
import { sendProblem } from '../errors/problem-details.filter';
import { securityHeaders } from './browser-security';

/** Where a password is exchanged for tokens. */
const SIGN_IN_PATH = '/v1/auth/login';

/** Headers a proxy in front of this process adds: a request carrying one came through it. */
const FORWARDING_HEADERS = ['forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-real-ip'];

/**
 * A development instance on the published development secrets (the built-in JWT_SECRET, with
 * which anyone signs an admin token, and the demo accounts' passwords) takes credentials and
 * sign-ins only from requests made on this machine directly: not through a proxy (a forwarding
 * header), nor under a name that is not this machine's (the Host header: a page of another site
 * whose name a DNS rebinding pointed at 127.0.0.1). Listening on loopback alone was no bound: `npm start` (which
 * makes NODE_ENV development when it is unset) behind a reverse proxy on the same server was
 * public, its demo admin signing in and forged admin tokens accepted. Off with a signing key of
 * its own or TRUST_PROXY (which development refuses with the built-in secret: loadConfig);
 * outside development there are no such secrets. A first request hook
 * (setFirstRequestHooks), ahead of every route and fast path.
 */
export function developmentLocalOnly(
  config: Pick<AppConfig, 'isDevelopment' | 'jwt' | 'http'>,
): ((request: FastifyRequest, reply: FastifyReply, done: () => void) => void) | undefined {
  const publishedSecrets =
    config.isDevelopment && !config.jwt.keyPair && config.jwt.secret === DEV_SECRETS.JWT_SECRET;
  if (!publishedSecrets || config.http.trustProxy !== false) return undefined;
  return (request, reply, done) => {
    // what those secrets open: a credential (a bearer token — forged with the built-in key —, the
    // queue board's Basic sign-in) or a sign-in (the demo accounts' passwords); the public reads
    // are the same to everyone
    const credentials =
      request.headers.authorization !== undefined ||
      (request.method === 'POST' && request.url.split('?')[0] === SIGN_IN_PATH);
    if (!credentials) return done();
    const forwarded = FORWARDING_HEADERS.some((name) => request.headers[name] !== undefined);
    if (!forwarded && isLoopbackHost(hostnameOf(request.headers.host ?? ''))) return done();
    void reply.headers(securityHeaders()).header('X-Request-Id', request.id);
    sendProblem(
      new DomainError(
        'FORBIDDEN',
        'This development instance runs on the published development secrets and takes ' +
          'credentials and sign-ins only from requests made on this machine directly (no proxy, ' +
          'a loopback host name). Give it a JWT_SECRET of its own, or run it with ' +
          'NODE_ENV=production.',
      ),
      request,
      reply,
    );
  };
}

/** The host name of a Host header (`localhost:3000`, `[::1]:3000`). */
function hostnameOf(host: string): string {
  const v6 = /^\[([^\]]*)\](?::\d*)?$/.exec(host);
  if (v6) return v6[1];
  return host.replace(/:\d*$/, '');
}
