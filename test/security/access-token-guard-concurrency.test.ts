import { registerCustomer } from '../support/auth';
import { TestApp, bootTestApp } from '../support/test-app';

/**
 * The guard runs passport per request: concurrent requests must each be answered, as the
 * principal of their own token (a strategy shared between requests would hand one request's
 * callbacks to another: a hang, or worse, another customer's identity).
 */
describe('security: the access-token guard under concurrent requests', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await bootTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('answers 30 parallel requests of 10 customers, each as its own customer', async () => {
    const customers = await Promise.all(Array.from({ length: 10 }, () => registerCustomer(t.http)));
    const calls = Array.from({ length: 30 }, (_, i) => customers[i % customers.length]);
    const answers = await Promise.all(
      calls.map((c) =>
        Promise.race([
          t.http
            .get('/v1/me', { token: c.accessToken })
            .then((r) => ({ status: r.status, id: r.body?.id as unknown })),
          new Promise<{ status: number; id: unknown }>((resolve) =>
            setTimeout(() => resolve({ status: 0, id: 'no answer within 10 s' }), 10_000).unref(),
          ),
        ]),
      ),
    );
    expect(answers).toEqual(calls.map((c) => ({ status: 200, id: c.user.id })));
  }, 30_000);
});
