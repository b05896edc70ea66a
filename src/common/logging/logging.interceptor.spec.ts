import { Logger } from '@nestjs/common';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host';
import { lastValueFrom, throwError } from 'rxjs';
import { QueryFailedError } from 'typeorm';
import type { AppConfig } from '../../config/config';
import { DomainError } from '../errors/domain-error';
import { LoggingInterceptor } from './logging.interceptor';

const ORDER = '0b6a7b6e-3d64-4d1e-9c2f-0f7e6a1b2c3d';

/** The command line's status and code are the ones the client is answered with. */
describe('LoggingInterceptor: the outcome of a failed command', () => {
  let lines: Record<string, unknown>[];
  beforeEach(() => {
    lines = [];
    jest.spyOn(Logger.prototype, 'log').mockImplementation((line: unknown) => {
      lines.push(line as Record<string, unknown>);
    });
  });
  afterEach(() => jest.restoreAllMocks());

  const failWith = async (err: unknown, id = ORDER) => {
    const interceptor = new LoggingInterceptor({ logLevel: 'info' } as AppConfig);
    const request = {
      method: 'POST',
      url: `/v1/orders/${id}/payment`,
      routeOptions: { url: '/v1/orders/:id/payment' },
      params: { id },
    };
    const context = new ExecutionContextHost([request, { statusCode: 200 }]);
    await lastValueFrom(
      interceptor.intercept(context, { handle: () => throwError(() => err) }),
    ).catch(() => undefined);
    expect(lines).toHaveLength(1);
    return { status: lines[0].status, error: lines[0].error, orderId: lines[0].orderId };
  };

  it('a payment provider outage: 503 SERVICE_UNAVAILABLE, as answered (not 500 GatewayError)', async () => {
    const gatewayDown = Object.assign(new Error('connect ETIMEDOUT'), {
      name: 'GatewayError',
      toDomainError: () =>
        new DomainError('SERVICE_UNAVAILABLE', 'The payment provider is unavailable; retry later.'),
    });
    expect(await failWith(gatewayDown)).toMatchObject({
      status: 503,
      error: 'SERVICE_UNAVAILABLE',
    });
  });

  it('a deadlock past its retries: 503; a value out of range: 400', async () => {
    const pg = (code: string) =>
      new QueryFailedError(
        'UPDATE x',
        [],
        Object.assign(new Error('e'), { code, severity: 'ERROR' }),
      );
    expect(await failWith(pg('40P01'))).toMatchObject({
      status: 503,
      error: 'SERVICE_UNAVAILABLE',
    });
    lines = [];
    expect(await failWith(pg('22003'))).toMatchObject({ status: 400, error: 'VALIDATION_FAILED' });
  });

  it('a domain error as itself; an unexpected error as a 500 named by its class', async () => {
    expect(await failWith(new DomainError('ORDER_NOT_PAYABLE', 'no'))).toMatchObject({
      status: 409,
      error: 'ORDER_NOT_PAYABLE',
    });
    lines = [];
    expect(await failWith(new TypeError('boom'))).toMatchObject({
      status: 500,
      error: 'TypeError',
    });
  });

  it("names the order by the path's id only when it is a UUID: a client's text there is not logged as an order id", async () => {
    const refused = new DomainError('VALIDATION_FAILED', 'id must be a UUID');
    expect(await failWith(refused)).toMatchObject({ status: 400, orderId: ORDER });
    lines = [];
    // as stored and answered: lower case, whatever the client wrote
    expect(await failWith(refused, ORDER.toUpperCase())).toMatchObject({ orderId: ORDER });
    lines = [];
    expect(await failWith(refused, 'ADMIN-REFUNDED-see-ticket-42')).toEqual({
      status: 400,
      error: 'VALIDATION_FAILED',
      orderId: undefined,
    });
  });
});
