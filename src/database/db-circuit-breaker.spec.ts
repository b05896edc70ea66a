import { Logger } from '@nestjs/common';
import { DataSource, QueryFailedError, QueryRunnerAlreadyReleasedError } from 'typeorm';
import { DomainError } from '../common/errors/domain-error';
import type { AppConfig } from '../config/config';
import { DbCircuitBreaker, isConnectionFailure } from './db-circuit-breaker';

const pgError = (code: string, message = 'x') => Object.assign(new Error(message), { code });
const queryFailed = (code: string) => new QueryFailedError('SELECT 1', [], pgError(code));

function breaker(failures = 3) {
  const config = { database: { breaker: { failures, halfOpenAfterMs: 60_000 } } } as AppConfig;
  return new DbCircuitBreaker({} as DataSource, config);
}

describe('isConnectionFailure', () => {
  beforeAll(() => Logger.overrideLogger(false));

  it.each(['08006', '08001', '08P01', '57P01', '57P02', '57P03', '25P03', '57P05'])('counts SQLSTATE %s', (code) => {
    expect(isConnectionFailure(queryFailed(code))).toBe(true);
  });

  it.each(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT'])('counts %s', (code) => {
    expect(isConnectionFailure(pgError(code))).toBe(true);
  });

  it('counts pool timeouts and dropped connections', () => {
    expect(isConnectionFailure(new Error('timeout exceeded when trying to connect'))).toBe(true);
    expect(isConnectionFailure(new Error('Connection terminated unexpectedly'))).toBe(true);
  });

  it('counts a statement on a transaction whose connection TypeORM released after an error', () => {
    expect(isConnectionFailure(new QueryRunnerAlreadyReleasedError())).toBe(true);
  });

  it.each(['23505', '23514', '40001', '40P01', '22P02', 'P0001'])('never counts SQLSTATE %s', (code) => {
    expect(isConnectionFailure(queryFailed(code))).toBe(false);
  });
});

describe('DbCircuitBreaker', () => {
  it('opens after N consecutive connection failures, then refuses at once with 503 and Retry-After', async () => {
    const b = breaker(3);
    const down = jest.fn().mockRejectedValue(pgError('ECONNREFUSED'));
    for (let i = 0; i < 3; i++) {
      await expect(b.execute(down)).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    }
    expect(b.state).toBe('open');
    const work = jest.fn().mockResolvedValue('ok');
    const refused = await b.execute(work).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(DomainError);
    expect(refused).toMatchObject({ status: 503, options: { headers: { 'Retry-After': '60' } } });
    expect(work).not.toHaveBeenCalled();
  });

  it('never opens on constraint violations or serialization failures, and passes them through', async () => {
    const b = breaker(2);
    for (const code of ['23505', '40001', '23514', '40P01']) {
      const err = queryFailed(code);
      await expect(b.execute(() => Promise.reject(err))).rejects.toBe(err);
    }
    expect(b.state).toBe('closed');
  });
});
