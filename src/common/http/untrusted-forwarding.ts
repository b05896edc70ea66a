import { Logger } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * A first request hook (setFirstRequestHooks) that says once, as a warning, when a request
 * carries `X-Forwarded-For` from a peer TRUST_PROXY does not trust: behind a load balancer that
 * nobody named, every client is the balancer's address, and every per-IP limit (login,
 * registration, the default budget) is shared by the whole shop — one client's 20 logins a
 * minute and every customer gets 429. Forgetting TRUST_PROXY is the safe direction (a client
 * cannot choose its address), so the process serves on; this is the operator's only hint.
 * Afterwards a boolean test per request.
 */
export function warnUntrustedForwarding(logger = new Logger('TrustProxy')) {
  let warned = false;
  return (request: FastifyRequest, _reply: FastifyReply, done: () => void): void => {
    if (
      !warned &&
      request.headers['x-forwarded-for'] !== undefined &&
      request.ip === request.socket.remoteAddress
    ) {
      warned = true;
      logger.warn(
        `X-Forwarded-For came from ${request.ip}, a peer TRUST_PROXY does not trust: it is ignored, and every ` +
          'client behind that proxy shares one address in the per-IP limits — set TRUST_PROXY to the proxy ' +
          '(its address, range or hop count) if it is yours (said once)',
      );
    }
    done();
  };
}
