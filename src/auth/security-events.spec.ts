import { Logger } from '@nestjs/common';
import { DomainError } from '../common/errors/domain-error';
import { GATE_BUSY } from '../common/throttling/concurrency-gate';
import { SIGN_IN_STORE_DOWN } from '../common/throttling/failed-attempt-limiter';
import { SecurityEvents, type SecurityEvent } from './security-events';

describe('SecurityEvents#signIn: what refused a sign-in', () => {
  const refusedBy = async (err: DomainError) => {
    const events = new SecurityEvents();
    const seen: SecurityEvent[] = [];
    jest.spyOn(events, 'record').mockImplementation((e) => void seen.push(e));
    const subject = { account: 'tag', user: { id: 'u-1', role: 'customer' as const } };
    await expect(
      events.signIn(
        'login',
        subject,
        '203.0.113.9',
        () => Promise.reject(err),
        () => ({
          id: 'u-1',
          role: 'customer',
        }),
      ),
    ).rejects.toBe(err);
    return seen;
  };
  const limited = (detail: string, policy?: string) =>
    new DomainError('RATE_LIMITED', detail, {
      headers: policy ? { 'RateLimit-Policy': policy } : {},
    });

  it('names the limit: a guess refused, a right password over its day, the store down (an outage, not an attack), or the password checks full (a spray that keeps them so)', async () => {
    for (const [err, limit] of [
      [limited('Too many failed sign-ins', '"signin-account";q=100;w=900'), 'signin-account'],
      [
        limited('Too many requests for this account', '"login-account-day";q=500;w=86400'),
        'login-account-day',
      ],
      [new DomainError('SERVICE_UNAVAILABLE', SIGN_IN_STORE_DOWN), 'store-unavailable'],
      [new DomainError('SERVICE_UNAVAILABLE', GATE_BUSY), 'hash-gate'],
    ] as const) {
      expect(await refusedBy(err)).toEqual([
        {
          event: 'sign_in_refused',
          door: 'login',
          account: 'tag',
          userId: 'u-1',
          client: '203.0.113.9',
          limit,
        },
      ]);
    }
  });

  it('records nothing for another failure (the database away: nothing was verified)', async () => {
    expect(
      await refusedBy(new DomainError('SERVICE_UNAVAILABLE', 'The database is unavailable.')),
    ).toEqual([]);
  });
});

describe('SecurityEvents#record', () => {
  afterEach(() => jest.restoreAllMocks());

  it("names the client by printable ASCII only (X-Forwarded-For's address is the client's to write)", () => {
    const warned: unknown[] = [];
    jest.spyOn(Logger.prototype, 'warn').mockImplementation((line) => void warned.push(line));
    new SecurityEvents().record({
      event: 'password_changed',
      userId: 'u-1',
      client: '2001:db8::1\x9b\x85',
    });
    expect(warned).toEqual([
      { event: 'password_changed', userId: 'u-1', client: '2001:db8::1\\u009b\\u0085' },
    ]);
  });
});
