import { JwtService } from '@nestjs/jwt';
import {
  createHmac,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  createSign,
  generateKeyPairSync,
  randomUUID,
} from 'node:crypto';
import { loadConfig } from '../config/config';
import { DomainError } from '../common/errors/domain-error';
import { sessionClientSecret } from '../config/jwt-keys';
import { jwtModuleOptions, keyIdOf } from './jwt-options';
import { JwtStrategy } from './jwt.strategy';
import { permissionsOf } from './permissions';
import type { SessionsOnRecord } from './sessions-on-record';
import { CLOCK_SKEW_MS, type RevokedSessions } from './revoked-sessions';
import { SecureRandom } from './secure-random';
import { TokenService } from './token.service';
import { mockOf } from '../../test/support/mocks';

const USER_ID = randomUUID();
const FAMILY_ID = randomUUID();

const SECRET = 'unit-test-secret-unit-test-secret-0123';
const config = loadConfig({
  NODE_ENV: 'development',
  JWT_SECRET: SECRET,
  JWT_ISSUER: 'iss-1',
  JWT_AUDIENCE: 'aud-1',
});
const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');

function forge(header: object, payload: object, secret = SECRET, hmac = 'sha256'): string {
  const body = `${b64(header)}.${b64(payload)}`;
  return `${body}.${createHmac(hmac, secret).update(body).digest('base64url')}`;
}

const revokedFamilies = new Set<string>();
const revoked = mockOf<RevokedSessions>(
  { isRevoked: (family: string) => Promise.resolve(revokedFamilies.has(family)) },
  'revoked',
);

// sessions opened here (family:user); any other is another deployment's
const openedHere = new Set<string>([`${FAMILY_ID}:${USER_ID}`]);
const sessions = mockOf<SessionsOnRecord>(
  {
    opened: (family: string, user: string) => Promise.resolve(openedHere.has(`${family}:${user}`)),
  },
  'sessions',
);

describe('JwtStrategy (passport-jwt)', () => {
  const strategy = new JwtStrategy(config, revoked, sessions);
  const tokens = new TokenService(new JwtService(jwtModuleOptions(config)), new SecureRandom());
  const claims = { sub: USER_ID, email: 'a@b.io', role: 'customer' as const, fam: FAMILY_ID };
  const principal = {
    userId: USER_ID,
    email: 'a@b.io',
    role: 'customer',
    permissions: permissionsOf('customer'),
    sessionId: FAMILY_ID,
  };
  const now = () => Math.floor(Date.now() / 1000);
  const valid = () => ({
    ...claims,
    typ: 'access',
    iss: 'iss-1',
    aud: 'aud-1',
    iat: now(),
    exp: now() + 60,
  });

  const refused = async (token: string) => {
    const err: unknown = await strategy.verifyAccess(token).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DomainError);
    expect((err as DomainError).code).toBe('TOKEN_INVALID');
  };

  it('accepts what TokenService signs, as its principal', async () => {
    const token = await tokens.signAccess(claims);
    await expect(strategy.verifyAccess(token)).resolves.toEqual(principal);
  });

  it('refuses a token that lives longer than JWT_ACCESS_TTL_SECONDS (signed before a deploy shortened it: its revocation marks would be gone before it expires), or has no iat', async () => {
    const ttl = config.jwt.accessTtlSeconds;
    const sign = (payload: object) => forge({ alg: 'HS256', typ: 'JWT' }, payload);
    // (iat and exp from one reading of the clock: a second ticking between two made it ttl + 1)
    const iat = now();
    await expect(strategy.verifyAccess(sign({ ...valid(), iat, exp: iat + ttl }))).resolves.toEqual(
      principal,
    );
    await refused(sign({ ...valid(), iat, exp: iat + ttl + 1 }));
    await refused(sign({ ...valid(), iat: now() - 3000, exp: now() + ttl }));
    const { iat: _iat, ...withoutIat } = valid();
    await refused(sign(withoutIat));
  });

  it("refuses a token issued further ahead of this host's clock than the skew allowed (its signer runs fast: it would outlive its session's revocation marks); accepts one within it", async () => {
    const ttl = config.jwt.accessTtlSeconds;
    const sign = (payload: object) => forge({ alg: 'HS256', typ: 'JWT' }, payload);
    const skew = CLOCK_SKEW_MS / 1000;
    const within = now() + skew - 5;
    await expect(
      strategy.verifyAccess(sign({ ...valid(), iat: within, exp: within + ttl })),
    ).resolves.toEqual(principal);
    const ahead = now() + skew + 60;
    await refused(sign({ ...valid(), iat: ahead, exp: ahead + ttl }));
  });

  it('accepts a correctly made token (control for the refusals below)', async () => {
    await expect(
      strategy.verifyAccess(forge({ alg: 'HS256', typ: 'JWT' }, valid())),
    ).resolves.toEqual(principal);
  });

  it('refuses a correctly made token of a revoked session, and only that session', async () => {
    revokedFamilies.add('f-revoked');
    try {
      await refused(forge({ alg: 'HS256' }, { ...valid(), fam: 'f-revoked' }));
      await expect(strategy.verifyAccess(forge({ alg: 'HS256' }, valid()))).resolves.toEqual(
        principal,
      );
    } finally {
      revokedFamilies.delete('f-revoked');
    }
  });

  it("refuses a correctly made token of a session not opened here (another deployment's, signed with the same key), or opened for another account", async () => {
    await refused(forge({ alg: 'HS256' }, { ...valid(), fam: randomUUID() }));
    await refused(forge({ alg: 'HS256' }, { ...valid(), sub: randomUUID() }));
    expect(sessions.opened).toHaveBeenCalledWith(FAMILY_ID, expect.any(String));
  });

  it('refuses alg none', () => refused(`${b64({ alg: 'none', typ: 'JWT' })}.${b64(valid())}.`));
  it('refuses HS512', () => refused(forge({ alg: 'HS512' }, valid(), SECRET, 'sha512')));
  it('refuses HS384', () => refused(forge({ alg: 'HS384' }, valid(), SECRET, 'sha384')));
  it('refuses a wrong audience', () =>
    refused(forge({ alg: 'HS256' }, { ...valid(), aud: 'other' })));
  it('refuses a wrong issuer', () =>
    refused(forge({ alg: 'HS256' }, { ...valid(), iss: 'other' })));
  it('refuses an expired token', () =>
    refused(forge({ alg: 'HS256' }, { ...valid(), exp: now() - 1 })));
  it('refuses a token without exp', () => {
    const { exp: _exp, ...noExp } = valid();
    return refused(forge({ alg: 'HS256' }, noExp));
  });
  it('refuses another typ', () => refused(forge({ alg: 'HS256' }, { ...valid(), typ: 'refresh' })));
  it('refuses a token without typ', () => {
    const { typ: _typ, ...noTyp } = valid();
    return refused(forge({ alg: 'HS256' }, noTyp));
  });
  it('refuses an unknown role', () =>
    refused(forge({ alg: 'HS256' }, { ...valid(), role: 'root' })));
  it('refuses another key', () =>
    refused(forge({ alg: 'HS256' }, valid(), 'another-secret-another-secret-0000')));
  it('refuses garbage', () => refused('garbage'));
  it.each([
    ['sub', 'not-a-uuid'],
    ['sub', `${randomUUID()}\u0000`],
    ['sub', 'x'.repeat(3000)],
    ['fam', 'a\u0000b'],
    ['fam', randomUUID().toUpperCase()],
  ])('refuses a signed token whose %s is not one of our ids (%#)', (claim, value) =>
    refused(forge({ alg: 'HS256' }, { ...valid(), [claim]: value })),
  );
});

describe('JwtStrategy with a key pair (JWT_PRIVATE_KEY / JWT_PUBLIC_KEY)', () => {
  const pem = (curve: string) => {
    const pair = generateKeyPairSync('ec', { namedCurve: curve });
    return {
      privateKey: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      publicKey: pair.publicKey.export({ type: 'spki', format: 'pem' }) as string,
    };
  };
  const ours = pem('P-256');
  const pairConfig = loadConfig({
    NODE_ENV: 'development',
    JWT_PRIVATE_KEY: ours.privateKey,
    JWT_PUBLIC_KEY: ours.publicKey,
    JWT_ISSUER: 'iss-1',
    JWT_AUDIENCE: 'aud-1',
  });
  const strategy = new JwtStrategy(pairConfig, revoked, sessions);
  const tokens = new TokenService(new JwtService(jwtModuleOptions(pairConfig)), new SecureRandom());
  const now = () => Math.floor(Date.now() / 1000);
  const valid = () => ({
    sub: USER_ID,
    email: 'a@b.io',
    role: 'customer',
    fam: FAMILY_ID,
    typ: 'access',
    iss: 'iss-1',
    aud: 'aud-1',
    iat: now(),
    exp: now() + 60,
  });
  const es256 = (payload: object, privateKey: string) => {
    const body = `${b64({ alg: 'ES256', typ: 'JWT' })}.${b64(payload)}`;
    const sig = createSign('SHA256')
      .update(body)
      .sign({ key: privateKey, dsaEncoding: 'ieee-p1363' });
    return `${body}.${sig.toString('base64url')}`;
  };
  const refused = async (token: string) => {
    const err: unknown = await strategy.verifyAccess(token).catch((e: unknown) => e);
    expect((err as DomainError).code).toBe('TOKEN_INVALID');
  };

  it('signs ES256 tokens that the public key alone verifies', async () => {
    const token = await tokens.signAccess({
      sub: USER_ID,
      email: 'a@b.io',
      role: 'customer',
      fam: FAMILY_ID,
    });
    expect(JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString())).toMatchObject({
      alg: 'ES256',
    });
    await expect(strategy.verifyAccess(token)).resolves.toMatchObject({
      userId: USER_ID,
      sessionId: FAMILY_ID,
    });
    await expect(strategy.verifyAccess(es256(valid(), ours.privateKey))).resolves.toMatchObject({
      userId: USER_ID,
    });
  });

  it('refuses HS256 made with the public key as its secret (algorithm confusion)', () =>
    refused(forge({ alg: 'HS256' }, valid(), ours.publicKey)));
  it('refuses a token of another key pair', () => refused(es256(valid(), pem('P-256').privateKey)));
  it('refuses HS256 under the development secret', () =>
    refused(forge({ alg: 'HS256' }, valid(), 'dev-only-insecure-jwt-secret-change-me')));
  it('refuses alg none', () => refused(`${b64({ alg: 'none' })}.${b64(valid())}.`));
  it('refuses an expired token of its own key', () =>
    refused(es256({ ...valid(), exp: now() - 1 }, ours.privateKey)));

  it("derives the sessions' client key from the private value: every encoding of the key gives the same one", () => {
    // SEC1 without the optional public key (openssl ec -no_public), built by hand
    const d = Buffer.from(
      createPrivateKey(ours.privateKey).export({ format: 'jwk' }).d!,
      'base64url',
    );
    const der = Buffer.concat([
      Buffer.from('30310201010420', 'hex'),
      d,
      Buffer.from('a00a06082a8648ce3d030107', 'hex'),
    ]);
    const sec1 = `-----BEGIN EC PRIVATE KEY-----\n${der.toString('base64')}\n-----END EC PRIVATE KEY-----\n`;
    const other = loadConfig({
      NODE_ENV: 'development',
      JWT_PRIVATE_KEY: sec1,
      JWT_PUBLIC_KEY: ours.publicKey,
    });
    expect(sessionClientSecret(other)).toEqual(sessionClientSecret(pairConfig));
    expect(sessionClientSecret(pairConfig)).toHaveLength(32);
    // and it is not the public key's (which others hold) nor the development secret
    expect(sessionClientSecret(pairConfig)).not.toEqual(sessionClientSecret(config));
  });
});

describe("JwtStrategy through a key rotation's roll (JWT_VERIFY_ONLY_SECRET / JWT_VERIFY_ONLY_PUBLIC_KEY): the key by the token's kid", () => {
  const OLD = SECRET;
  const NEW = 'the-next-key-0123456789-ABCDEFGHIJKLMN';
  const configOf = (env: Record<string, string>) =>
    loadConfig({ NODE_ENV: 'development', JWT_ISSUER: 'iss-1', JWT_AUDIENCE: 'aud-1', ...env });
  const signerOf = (env: Record<string, string>) =>
    new TokenService(new JwtService(jwtModuleOptions(configOf(env))), new SecureRandom());
  const strategyOf = (env: Record<string, string>) =>
    new JwtStrategy(configOf(env), revoked, sessions);
  // the roll's three configurations: before (old signs), step 1 (old signs, new accepted),
  // step 2 (new signs, old accepted), and step 3 (new alone)
  const before = { JWT_SECRET: OLD };
  const step1 = { JWT_SECRET: OLD, JWT_VERIFY_ONLY_SECRET: NEW };
  const step2 = { JWT_SECRET: NEW, JWT_VERIFY_ONLY_SECRET: OLD };
  const after = { JWT_SECRET: NEW };
  const claims = { sub: USER_ID, email: 'a@b.io', role: 'customer' as const, fam: FAMILY_ID };
  const header = (token: string) =>
    JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString()) as Record<string, unknown>;
  const now = () => Math.floor(Date.now() / 1000);
  const valid = () => ({
    ...claims,
    typ: 'access',
    iss: 'iss-1',
    aud: 'aud-1',
    iat: now(),
    exp: now() + 60,
  });
  const outcome = (strategy: JwtStrategy, token: string) =>
    strategy.verifyAccess(token).then(
      () => 'accepted',
      (err: DomainError) => err.code,
    );

  it('names its key in the header (a short digest, never the key) and is accepted by every configuration of the roll that knows that key', async () => {
    const oldToken = await signerOf(before).signAccess(claims);
    const newToken = await signerOf(step2).signAccess(claims);
    const oldKid = keyIdOf(createSecretKey(Buffer.from(OLD)));
    expect(header(oldToken)).toEqual({ alg: 'HS256', typ: 'JWT', kid: oldKid });
    expect(header(newToken).kid).toBe(keyIdOf(createSecretKey(Buffer.from(NEW))));
    expect(oldKid).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(OLD).not.toContain(oldKid);
    // step 1 signs with the old key: its tokens are the old key's
    expect(header(await signerOf(step1).signAccess(claims)).kid).toBe(oldKid);
    const results: Record<string, string[]> = {};
    for (const [name, env] of Object.entries({ before, step1, step2, after })) {
      const strategy = strategyOf(env);
      results[name] = [await outcome(strategy, oldToken), await outcome(strategy, newToken)];
    }
    expect(results).toEqual({
      before: ['accepted', 'TOKEN_INVALID'],
      step1: ['accepted', 'accepted'],
      step2: ['accepted', 'accepted'],
      // the old key removed (its time run out, or leaked): its tokens refused at once
      after: ['TOKEN_INVALID', 'accepted'],
    });
  });

  it('tries a token without a kid against the signing key only, and refuses an unknown kid unverified', async () => {
    const strategy = strategyOf(step2);
    const noKid = (key: string) => forge({ alg: 'HS256', typ: 'JWT' }, valid(), key);
    expect(await outcome(strategy, noKid(NEW))).toBe('accepted');
    // (signed before kids were written, under what is now the verify-only key)
    expect(await outcome(strategy, noKid(OLD))).toBe('TOKEN_INVALID');
    // signed with the signing key itself, but naming a key this process does not know
    expect(
      await outcome(strategy, forge({ alg: 'HS256', kid: 'someone-elses-k' }, valid(), NEW)),
    ).toBe('TOKEN_INVALID');
    // a kid naming one key over a signature of the other: its key's signature is checked
    const newKid = keyIdOf(createSecretKey(Buffer.from(NEW)));
    expect(await outcome(strategy, forge({ alg: 'HS256', kid: newKid }, valid(), OLD))).toBe(
      'TOKEN_INVALID',
    );
  });

  it('holds each key to its own algorithm when the roll moves from JWT_SECRET to a key pair: the public key is never an HMAC secret', async () => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const privatePem = pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const publicPem = pair.publicKey.export({ type: 'spki', format: 'pem' }) as string;
    const pairKid = keyIdOf(createPublicKey(publicPem));
    const hsKid = keyIdOf(createSecretKey(Buffer.from(OLD)));
    // step 1: the secret signs, the pair's public key is accepted; step 2: the pair signs
    const hsStep1 = { JWT_SECRET: OLD, JWT_VERIFY_ONLY_PUBLIC_KEY: publicPem };
    const pairStep2 = {
      JWT_PRIVATE_KEY: privatePem,
      JWT_PUBLIC_KEY: publicPem,
      JWT_VERIFY_ONLY_SECRET: OLD,
    };
    const fromPair = await signerOf(pairStep2).signAccess(claims);
    const fromSecret = await signerOf(hsStep1).signAccess(claims);
    expect(header(fromPair)).toMatchObject({ alg: 'ES256', kid: pairKid });
    for (const env of [hsStep1, pairStep2]) {
      const strategy = strategyOf(env);
      expect([await outcome(strategy, fromPair), await outcome(strategy, fromSecret)]).toEqual([
        'accepted',
        'accepted',
      ]);
      // HS256 made with the public key as its secret, naming the pair's key (or no key)
      for (const kid of [pairKid, undefined]) {
        const confused = forge({ alg: 'HS256', ...(kid ? { kid } : {}) }, valid(), publicPem);
        expect(await outcome(strategy, confused)).toBe('TOKEN_INVALID');
      }
      // the secret's kid over an ES256 header
      const es256 = (h: object) => {
        const body = `${b64(h)}.${b64(valid())}`;
        const sig = createSign('SHA256')
          .update(body)
          .sign({ key: privatePem, dsaEncoding: 'ieee-p1363' });
        return `${body}.${sig.toString('base64url')}`;
      };
      expect(await outcome(strategy, es256({ alg: 'ES256', kid: hsKid }))).toBe('TOKEN_INVALID');
      expect(await outcome(strategy, es256({ alg: 'ES256', kid: pairKid }))).toBe('accepted');
    }
  });
});
