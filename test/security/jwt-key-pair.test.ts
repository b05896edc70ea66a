/**
 * API.md, configuration: "`JWT_SECRET` (or key pair variables)". A production instance signing
 * access tokens with JWT_PRIVATE_KEY (EC P-256 → ES256) boots without JWT_SECRET; its tokens
 * verify with the public key alone (what another service would hold) and work across sign-in,
 * refresh and logout; tokens made with the public key as an HMAC secret, with the development
 * secret or with another key pair are refused.
 */
import { createHmac, generateKeyPairSync, sign, verify } from 'node:crypto';
import { registerCustomer } from '../support/auth';
import { deploymentSecrets } from '../support/deployment-secrets';
import { forgeToken, forgedAdminClaims } from '../support/forged-tokens';
import { expectProblem } from '../support/http';
import { TestApp, bootTestApp } from '../support/test-app';

const pemPair = () => {
  const k = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    privateKey: k.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKey: k.publicKey.export({ type: 'spki', format: 'pem' }) as string,
  };
};

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
const part = (token: string, i: number) =>
  JSON.parse(Buffer.from(token.split('.')[i], 'base64url').toString()) as Record<string, unknown>;

describe('access tokens signed with a key pair (JWT_PRIVATE_KEY / JWT_PUBLIC_KEY)', () => {
  const keys = pemPair();
  let t: TestApp;

  beforeAll(async () => {
    t = await bootTestApp({
      env: {
        NODE_ENV: 'production',
        JWT_SECRET: '',
        // one line with \n escapes, as a .env file or a secret store carries a PEM
        JWT_PRIVATE_KEY: keys.privateKey.replace(/\n/g, '\\n'),
        JWT_PUBLIC_KEY: keys.publicKey.replace(/\n/g, '\\n'),
        ...deploymentSecrets(),
      },
    });
  });
  afterAll(() => t?.close());

  const forged = forgeToken;
  const adminClaims = () => forgedAdminClaims(t.config);

  it('signs ES256 tokens the public key alone verifies, and they work through refresh and logout', async () => {
    const s = await registerCustomer(t.http);
    expect(part(s.accessToken, 0)).toMatchObject({ alg: 'ES256' });
    const [h, p, sig] = s.accessToken.split('.');
    expect(
      verify(
        'sha256',
        Buffer.from(`${h}.${p}`),
        { key: keys.publicKey, dsaEncoding: 'ieee-p1363' },
        Buffer.from(sig, 'base64url'),
      ),
    ).toBe(true);
    expect((await t.http.get('/v1/me', { token: s.accessToken })).status).toBe(200);

    const refreshed = await t.http.post('/v1/auth/refresh', { refreshToken: s.refreshToken });
    expect(refreshed.status).toBe(200);
    expect((await t.http.get('/v1/me', { token: refreshed.body.accessToken })).status).toBe(200);
    expect(
      (
        await t.http.post(
          '/v1/auth/logout',
          { refreshToken: refreshed.body.refreshToken },
          { token: refreshed.body.accessToken },
        )
      ).status,
    ).toBe(204);
    expectProblem(
      await t.http.get('/v1/me', { token: refreshed.body.accessToken }),
      401,
      'TOKEN_INVALID',
    );
  });

  it('refuses admin tokens made with the public key as an HMAC secret, the development secret, or another key pair', async () => {
    const attempts = {
      'HS256 under the public key (algorithm confusion)': forged('HS256', adminClaims(), (body) =>
        createHmac('sha256', keys.publicKey).update(body).digest(),
      ),
      'HS256 under the development secret': forged('HS256', adminClaims(), (body) =>
        createHmac('sha256', 'dev-only-insecure-jwt-secret-change-me').update(body).digest(),
      ),
      'ES256 under another key pair': forged('ES256', adminClaims(), (body) =>
        sign('sha256', Buffer.from(body), { key: pemPair().privateKey, dsaEncoding: 'ieee-p1363' }),
      ),
      'alg none': `${b64({ alg: 'none' })}.${b64(adminClaims())}.`,
    };
    const outcomes: string[] = [];
    for (const [what, token] of Object.entries(attempts)) {
      const res = await t.http.get('/v1/admin/orders', { token });
      outcomes.push(`${what} → ${res.status}`);
    }
    expect(outcomes).toEqual(Object.keys(attempts).map((what) => `${what} → 401`));
  });
});
