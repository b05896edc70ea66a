import { loadConfig } from '../config/config';
import type { TransactionHost } from '../database/transaction-host';
import type { RefreshTokenRepository } from './refresh-token.repository';
import type { RevokedSessions } from './revoked-sessions';
import { SessionIssuer } from './session-issuer';
import type { TokenService } from './token.service';
import { Clock } from '../common/time/clock';
import type { User } from '../users/user.repository';

const OLD = 'the-old-secret-0123456789-abcdefghij';
const NEW = 'the-new-secret-0123456789-abcdefghij';

/** A SessionIssuer of a process configured with `env` (only its keyed values are used here). */
const issuerOf = (env: Record<string, string>) =>
  new SessionIssuer(
    {} as RefreshTokenRepository,
    {} as TokenService,
    {} as RevokedSessions,
    {} as TransactionHost,
    loadConfig({ NODE_ENV: 'development', ...env }),
    new Clock(),
  );

describe("SessionIssuer's keyed values through a key rotation's roll", () => {
  const before = issuerOf({ JWT_SECRET: OLD });
  const step1 = issuerOf({ JWT_SECRET: OLD, JWT_VERIFY_ONLY_SECRET: NEW });
  const step2 = issuerOf({ JWT_SECRET: NEW, JWT_VERIFY_ONLY_SECRET: OLD });
  const after = issuerOf({ JWT_SECRET: NEW });
  const email = 'owner@shop.test';

  it("makes device tokens under the signing key, and takes one made under either key of the roll as the account's device", () => {
    const device = before.newDevice();
    const byOld = before.deviceTokenFor(email, device);
    const byNew = after.deviceTokenFor(email, device);
    expect(step1.deviceTokenFor(email, device)).toBe(byOld);
    expect(step2.deviceTokenFor(email, device)).toBe(byNew);
    const recognised = (issuer: SessionIssuer) =>
      [byOld, byNew].map((token) => issuer.deviceOf(token, email));
    expect({
      before: recognised(before),
      step1: recognised(step1),
      step2: recognised(step2),
      after: recognised(after),
    }).toEqual({
      before: [device, null],
      step1: [device, device],
      step2: [device, device],
      // the previous key removed: its device tokens are a stranger's
      after: [null, device],
    });
    // another account's token is no device of this one under either key
    expect(step2.deviceOf(step2.deviceTokenFor('other@shop.test', device), email)).toBeNull();
  });

  it("records a session's client under the signing key and finds it recorded under either key of the roll", () => {
    const ip = '203.0.113.9';
    expect(step2.clientKeysOf(email, ip)).toEqual([
      after.clientKeyOf(email, ip),
      before.clientKeyOf(email, ip),
    ]);
    expect(step2.clientKeyOf(email, ip)).toBe(after.clientKeyOf(email, ip));
    expect(step1.clientKeysOf(email, ip)).toEqual([
      before.clientKeyOf(email, ip),
      after.clientKeyOf(email, ip),
    ]);
    expect(after.clientKeysOf(email, ip)).toEqual([after.clientKeyOf(email, ip)]);
  });

  it("gives the security log's account tags under the signing key alone: a rotation changes them (documented)", () => {
    expect(step1.accountTag(email)).toBe(before.accountTag(email));
    expect(step2.accountTag(email)).toBe(after.accountTag(email));
    expect(after.accountTag(email)).not.toBe(before.accountTag(email));
  });
});

describe("SessionIssuer's access tokens", () => {
  const NOW = new Date('2026-01-01T10:00:00Z');
  const config = loadConfig({ NODE_ENV: 'development' });
  const signAccess = jest.fn(async () => 'token');
  const issuer = new SessionIssuer(
    {} as RefreshTokenRepository,
    { signAccess } as unknown as TokenService,
    {} as RevokedSessions,
    {} as TransactionHost,
    config,
    { now: () => NOW },
  );
  const user = { id: 'u-1', email: 'a@shop.test', role: 'customer', name: 'A' } as User;
  const endingIn = (seconds: number) => ({
    familyId: 'f-1',
    refreshToken: 'r',
    endsAt: new Date(NOW.getTime() + seconds * 1000),
  });

  it.each([
    ['a session far from its end: the full lifetime', 86_400, config.jwt.accessTtlSeconds],
    ["100 s before the session's end: those 100 s", 100, 100],
    ['1.5 s before it: one second', 1.5, 1],
    ['past it (it ended while the refresh ran): one second', -5, 1],
  ])('%s', async (_case, left, expected) => {
    signAccess.mockClear();
    const tokens = await issuer.tokensFor(user, endingIn(left));
    expect(tokens.expiresIn).toBe(expected);
    expect(signAccess).toHaveBeenCalledWith(
      { sub: 'u-1', email: 'a@shop.test', role: 'customer', fam: 'f-1' },
      expected,
    );
  });
});
