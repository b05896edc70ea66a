import { Logger } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { logDenied, logUnserved, rememberAnsweredCode } from './command-log';

const request = (over: Record<string, unknown> = {}) =>
  ({
    id: 'req-1',
    method: 'GET',
    ip: '203.0.113.9',
    url: '/v1/admin/orders?limit=100',
    routeOptions: { url: '/v1/admin/orders' },
    ...over,
  }) as unknown as FastifyRequest;
const reply = (statusCode: number) => ({ statusCode, elapsedTime: 12.34 }) as FastifyReply;

describe('the lines of answers no access log writes', () => {
  let warned: unknown[][];
  beforeEach(() => {
    warned = [];
    jest.spyOn(Logger.prototype, 'warn').mockImplementation((...args: unknown[]) => {
      warned.push(args);
    });
  });
  afterEach(() => jest.restoreAllMocks());

  it('a 5xx answer leaves a warn line with its request id, route and code (above info there is no access line)', () => {
    const failed = request({ method: 'POST', routeOptions: { url: '/v1/orders' } });
    rememberAnsweredCode(failed, 'SERVICE_UNAVAILABLE');
    logUnserved(failed, reply(503));
    for (const status of [200, 201, 400, 404, 429]) logUnserved(request(), reply(status));
    expect(warned).toEqual([
      [
        {
          msg: 'request failed',
          action: 'POST /v1/orders',
          status: 503,
          durationMs: 12.3,
          error: 'SERVICE_UNAVAILABLE',
          requestId: 'req-1',
        },
      ],
    ]);
  });

  it('a 403 FORBIDDEN is a security event naming who, what and from where — a read too; nothing else is', () => {
    const peek = request({ user: { userId: 'u-7' } });
    rememberAnsweredCode(peek, 'FORBIDDEN');
    logDenied(peek, reply(403));
    for (const status of [200, 401, 404, 500]) logDenied(request(), reply(status));
    // a 403 of the shop's rules (a review of a product the customer did not buy) is no security event
    const review = request({ user: { userId: 'u-7' } });
    rememberAnsweredCode(review, 'REVIEW_NOT_ALLOWED');
    logDenied(review, reply(403));
    expect(warned).toEqual([
      [
        {
          event: 'access_denied',
          action: 'GET /v1/admin/orders',
          principalId: 'u-7',
          client: '203.0.113.9',
          error: 'FORBIDDEN',
          requestId: 'req-1',
        },
        'access_denied',
      ],
    ]);
  });

  it("names the client by printable ASCII only: an address X-Forwarded-For gave (a proxy trusted past its own entry) is the client's to write", () => {
    const forged = request({ ip: '203.0.113.9\x9b2J\x85' });
    rememberAnsweredCode(forged, 'FORBIDDEN');
    logDenied(forged, reply(403));
    expect(warned[0][0]).toMatchObject({ client: '203.0.113.9\\u009b2J\\u0085' });
  });
});
