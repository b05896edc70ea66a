import { request } from 'node:http';
import Stripe from 'stripe';
import { DEV_SECRETS } from '../../src/config/config';
import { registerCustomer, TEST_PASSWORD } from '../support/auth';
import { TestApp, bootTestApp } from '../support/test-app';

/** One exchange with any headers (Host included, which fetch does not let a caller set). */
function exchange(
  baseUrl: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = request(
      { hostname, port, method, path, headers: { connection: 'close', ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * A development instance on the published secrets (the built-in JWT_SECRET, the demo accounts'
 * passwords) behind a reverse proxy on the same server — `npm start`, which makes NODE_ENV
 * development when it is unset — was public: the demo admin signed in, and an admin token signed
 * with the built-in key was accepted. It takes credentials and sign-ins only from requests made
 * on this machine directly now; TRUST_PROXY with the built-in key refuses to boot (config.spec).
 */
describe('a development instance on loopback, reached through a proxy or another name', () => {
  let t: TestApp;
  let own: TestApp;
  let proxied: TestApp;
  beforeAll(async () => {
    t = await bootTestApp();
    own = await bootTestApp({
      db: t.db,
      env: { JWT_SECRET: 'a-development-secret-of-its-own-0123456789' },
    });
    proxied = await bootTestApp({ db: t.db, env: { TRUST_PROXY: '127.0.0.1' } });
  });
  afterAll(async () => {
    await own?.close();
    await proxied?.close();
    await t?.close();
  });

  it('refuses credentials and sign-ins (403 problem), answers the public reads, and serves them all directly', async () => {
    expect(t.config.jwt.secret).toBe(DEV_SECRETS.JWT_SECRET);
    const customer = await registerCustomer(t.http);
    const login = JSON.stringify({ email: customer.email, password: TEST_PASSWORD });
    const bearer = { authorization: `Bearer ${customer.accessToken}` };
    const json = { 'content-type': 'application/json' };
    const local = { host: new URL(t.baseUrl).host };
    // directly, under this machine's names: served
    for (const host of [local.host, 'localhost', '127.0.0.1:3000', '[::1]:3000']) {
      expect((await exchange(t.baseUrl, 'GET', '/v1/me', { ...bearer, host })).status).toBe(200);
    }
    expect(
      (await exchange(t.baseUrl, 'POST', '/v1/auth/login', { ...json, ...local }, login)).status,
    ).toBe(200);
    // through a proxy (any forwarding header), or under another name (a DNS rebinding)
    for (const via of [
      { ...local, 'x-forwarded-for': '203.0.113.7' },
      { ...local, forwarded: 'for=203.0.113.7' },
      { ...local, 'x-real-ip': '203.0.113.7' },
      { ...local, 'x-forwarded-host': 'shop.example' },
      { host: 'shop.example' },
      { host: 'attacker.example:3000' },
    ]) {
      const me = await exchange(t.baseUrl, 'GET', '/v1/me', { ...bearer, ...via });
      expect([me.status, JSON.parse(me.body).code]).toEqual([403, 'FORBIDDEN']);
      expect(JSON.parse(me.body).detail).toMatch(
        /takes credentials and sign-ins only from requests made on this machine directly/,
      );
      // the sign-in however its path is spelt (as routed: percent-encoded, absolute-form)
      for (const path of [
        '/v1/auth/login',
        '/v1/auth/%6cogin',
        'http://shop.example/v1/auth/login',
      ]) {
        const signIn = await exchange(t.baseUrl, 'POST', path, { ...json, ...via }, login);
        expect([path, signIn.status]).toEqual([path, 403]);
      }
      // the queue board's Basic sign-in too
      const board = await exchange(t.baseUrl, 'GET', '/admin/queues', {
        ...via,
        authorization: `Basic ${Buffer.from(`${customer.email}:${TEST_PASSWORD}`).toString('base64')}`,
      });
      expect(board.status).toBe(403);
      // and a Stripe event signed with the published development webhook secret
      const event = JSON.stringify({
        id: 'evt_via_proxy',
        object: 'event',
        type: 'charge.updated',
      });
      const webhook = await exchange(
        t.baseUrl,
        'POST',
        '/v1/webhooks/stripe',
        {
          ...json,
          ...via,
          'stripe-signature': new Stripe('sk_test_unused').webhooks.generateTestHeaderString({
            payload: event,
            secret: t.config.stripe.webhookSecret,
          }),
        },
        event,
      );
      expect(webhook.status).toBe(403);
      // what is the same for everyone is answered
      expect((await exchange(t.baseUrl, 'GET', '/v1/categories', via)).status).toBe(200);
    }
    // nor does a key of its own open it (the demo accounts' passwords sign in on loopback)
    const via = { host: 'shop.example', 'x-forwarded-for': '203.0.113.7' };
    expect(
      (await exchange(own.baseUrl, 'POST', '/v1/auth/login', { ...json, ...via }, login)).status,
    ).toBe(403);
    // behind a proxy the operator names (TRUST_PROXY: its own key, no demo password) it serves
    const session = JSON.parse(
      (await exchange(proxied.baseUrl, 'POST', '/v1/auth/login', { ...json, ...via }, login)).body,
    ) as { accessToken: string };
    expect(
      (
        await exchange(proxied.baseUrl, 'GET', '/v1/me', {
          ...via,
          authorization: `Bearer ${session.accessToken}`,
        })
      ).status,
    ).toBe(200);
  });
});
