import { randomUUID } from 'node:crypto';
import { AccountService } from '../../src/auth/account.service';
import { BOARD_FAILURES_PER_CLIENT } from '../../src/common/throttling/rate-limit.policies';
import { TEST_PASSWORD } from '../support/auth';
import { PrivateRedis } from '../support/private-redis';
import { TestApp, bootTestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';

const basic = (email: string, password: string) =>
  `Basic ${Buffer.from(`${email}:${password}`).toString('base64')}`;

/**
 * A Redis slower than the sign-in limiter's 500 ms (a snapshot's fork, a long script) still runs
 * the attempts' reservations the limiter gave up on. Those requests were refused (503) without a
 * password being checked, yet each stayed counted as a failure: a page of the queue board loaded
 * during a slow second locked its admin out for the rest of the window (15 min) once Redis was
 * fast again. The limiter now gives back a reservation that answers after it gave up.
 */
describe('sign-in limits when Redis is slow, not down', () => {
  let redis: PrivateRedis;
  let t: TestApp;
  beforeAll(async () => {
    redis = await PrivateRedis.start();
    t = await bootTestApp({
      env: {
        RATE_LIMIT_ENABLED: 'true',
        TRUST_PROXY: '127.0.0.1',
        REDIS_URL: redis.url,
        // a slow Redis given up on after 500 ms (the production default: test apps wait longer,
        // test/support/env.ts)
        RATE_LIMIT_STORE_TIMEOUT_MS: '500',
      },
    });
  });
  afterAll(async () => {
    redis?.thaw();
    await t?.close();
    await redis?.down();
  });

  it("attempts refused unverified while Redis was slow are not counted: the admin's right password works once it is fast again", async () => {
    const admin = `admin-${randomUUID()}@test.local`;
    await t.app.get(AccountService).ensureAccount(admin, TEST_PASSWORD, 'admin', 'Admin');
    const board = () =>
      t.http.get('/admin/queues', {
        headers: { 'x-forwarded-for': '10.30.0.1', authorization: basic(admin, TEST_PASSWORD) },
      });
    redis.freeze();
    let refused: number[];
    try {
      // a page load and its polls: as many requests as the client's whole budget
      refused = (await Promise.all(Array.from({ length: BOARD_FAILURES_PER_CLIENT }, board))).map(
        (r) => r.status,
      );
    } finally {
      redis.thaw(); // (well within the client's 3 s socket timeout: the replies still arrive)
    }
    expect(refused).toEqual(Array(BOARD_FAILURES_PER_CLIENT).fill(503));
    // the reservations ran once Redis went on; given back, the right password is let in (they
    // stayed counted: 429 for the rest of the 15-minute window)
    await waitFor('the admin to be let in', async () => (await board()).status, {
      until: (s) => s === 200,
    });
  });
});
