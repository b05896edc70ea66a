import { registerCustomer } from '../support/auth';
import { AppBehindSilentProxy, SilentProxy, bootBehindSilentProxy } from '../support/silent-proxy';
import type { TestApp } from '../support/test-app';

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
  let app: AppBehindSilentProxy;
  let t: TestApp;
  let proxy: SilentProxy;

  beforeAll(async () => {
    app = await bootBehindSilentProxy({ DATABASE_QUERY_TIMEOUT_MS: '3000' });
    ({ t, proxy } = app);
  });
  afterAll(async () => {
    await app?.close();
  });

  it("a refresh answers its new pair although the pool's idle connections went silent with it; nothing revoked", async () => {
    const session = await registerCustomer(t.http);
    // a warm pool: eight idle connections for the cut to silence
    await app.warmPool();
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
