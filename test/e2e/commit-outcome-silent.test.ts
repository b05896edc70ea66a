import { TransactionHost } from '../../src/database/transaction-host';
import { registerCustomer } from '../support/auth';
import { SilentProxy, startSilentProxy } from '../support/silent-proxy';
import { TestApp, bootTestApp } from '../support/test-app';
import { createTestDatabase } from '../support/test-database';

/**
 * A COMMIT whose answer is lost in a cut that sends no reset — a network path dropping packets for
 * a moment — silences the pool's idle connections with it, each until DATABASE_QUERY_TIMEOUT_MS.
 * The outcome's question was asked over the pool: on one of them it stalled for the whole query
 * timeout, used up the 5 s the question is asked for, and a refresh that had committed answered
 * 503 — its retry then found the token spent and ended the session as a theft (blink review,
 * with DATABASE_QUERY_TIMEOUT_MS=3000; a sign-up, a password change, a keyless stock adjustment
 * alike). It is asked over a connection of its own now (TransactionHost#askOutcome).
 */
describe('a COMMIT whose answer is lost in a silent cut', () => {
  let t: TestApp;
  let proxy: SilentProxy;

  beforeAll(async () => {
    const db = await createTestDatabase();
    proxy = await startSilentProxy(db.url);
    t = await bootTestApp({
      db,
      env: { DATABASE_URL: proxy.through(db.url), DATABASE_QUERY_TIMEOUT_MS: '3000' },
    });
  });
  afterAll(async () => {
    // the silenced connections first (reset): a pool's end waits for each of its connections
    await proxy?.close();
    await t?.close();
    await t?.db.drop();
  });

  it("a refresh answers its new pair although the pool's idle connections went silent with it; nothing revoked", async () => {
    const session = await registerCustomer(t.http);
    // a warm pool: eight idle connections for the cut to silence
    const tx = t.app.get(TransactionHost);
    await Promise.all(Array.from({ length: 8 }, () => tx.query('SELECT pg_sleep(0.3)')));
    const cut = proxy.silenceAfter(/^COMMIT$/);
    const res = await t.http.post('/v1/auth/refresh', { refreshToken: session.refreshToken });
    await cut;
    expect(res.status).toBe(200);
    const revoked = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM refresh_token_families WHERE user_id = $1 AND revoked_at IS NOT NULL`,
      [session.user.id],
    );
    expect(revoked.rows[0].n).toBe(0);
  }, 60_000);
});
