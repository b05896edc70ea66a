import { Algorithm, hash } from '@node-rs/argon2';
import {
  HASH_PLACES_PER_NETWORK,
  HASH_QUEUE_LIMIT,
  OWASP_MINIMUM,
  PasswordHasher,
  parseParams,
} from './password-hasher';
import { SecureRandom } from './secure-random';
import { DEMO_ADMIN } from './demo-credentials';
import type { AppConfig } from '../config/config';

describe('PasswordHasher', () => {
  const hasher = new PasswordHasher(new SecureRandom());

  it('makes argon2id v19 hashes at the OWASP minimum or above, parameters in the string', async () => {
    const phc = await hasher.hash('correct-horse-battery');
    expect(phc).toMatch(/^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$/);
    const p = parseParams(phc)!;
    expect(p.m).toBeGreaterThanOrEqual(19_456);
    expect(p.t).toBeGreaterThanOrEqual(2);
    expect(p.p).toBeGreaterThanOrEqual(1);
  });

  it('salts: the same password hashes differently each time', async () => {
    expect(await hasher.hash('same-password')).not.toBe(await hasher.hash('same-password'));
  });

  it('takes the published demo passwords only in development on loopback (bound beyond it, anyone reaching it would be the demo admin)', async () => {
    const account = {
      email: DEMO_ADMIN.email,
      passwordHash: await hasher.hash(DEMO_ADMIN.password),
    };
    const on = (isDevelopment: boolean, host?: string, trustProxy: string | false = false) =>
      new PasswordHasher(new SecureRandom(), undefined, {
        passwordHashConcurrency: 1,
        isDevelopment,
        ...(host === undefined ? {} : { http: { host, trustProxy } as AppConfig['http'] }),
      }).verifySignIn(account, DEMO_ADMIN.password);
    expect(await on(true, '127.0.0.1')).toBe(true);
    expect(await on(true)).toBe(true);
    expect(await on(true, '0.0.0.0')).toBe(false);
    expect(await on(true, '192.168.1.20')).toBe(false);
    expect(await on(false, '127.0.0.1')).toBe(false);
    // nor behind a proxy of its own (reachable through it)
    expect(await on(true, '127.0.0.1', '127.0.0.1')).toBe(false);
  });

  it('verifies the right password and refuses a wrong one', async () => {
    const phc = await hasher.hash('correct-horse-battery');
    expect(await hasher.verify(phc, 'correct-horse-battery')).toBe(true);
    expect(await hasher.verify(phc, 'correct-horse-batterz')).toBe(false);
  });

  it('the same password typed on another keyboard verifies: precomposed or combining marks, full-width digits (NFKC)', async () => {
    const precomposed = 'Ph\u1edf-secret-\u0661'; // "Phở-secret-" + an Arabic-Indic digit
    const combining = 'Pho\u031b\u0309-secret-\u0661'; // o + horn + hook above
    expect(precomposed).not.toBe(combining);
    const phc = await hasher.hash(precomposed);
    expect(await hasher.verify(phc, combining)).toBe(true);
    expect(await hasher.verify(phc, precomposed)).toBe(true);
    const wide = await hasher.hash('pass\uff11\uff12\uff13word'); // full-width １２３
    expect(await hasher.verify(wide, 'pass123word')).toBe(true);
    expect(await hasher.verify(phc, 'Pho-secret-\u0661')).toBe(false);
  });

  it('still verifies a hash made before passwords were normalized, as the password was typed, and asks for its rehash', async () => {
    const typed = 'Pho\u031b\u0309-secret-1'; // hashed as is by the earlier code
    const legacy = await hash(typed, { algorithm: Algorithm.Argon2id, ...OWASP_MINIMUM });
    expect(await hasher.verify(legacy, typed)).toBe(true);
    expect(await hasher.verify(legacy, 'Pho\u031b\u0309-secret-2')).toBe(false);
    expect(await hasher.verify(legacy, typed.normalize('NFKC'))).toBe(false); // as it was made: as typed
    expect(hasher.needsRehash(legacy)).toBe(true); // upgraded to the NFKC form at the next sign-in
    expect(hasher.needsRehash(await hasher.hash(typed))).toBe(false);
  });

  it('one argon2 run per check, whatever the hash and the input (no doubled cost, no timing that tells old hashes apart)', async () => {
    const gate = jest.spyOn(hasher.gate, 'run');
    const argon2 = jest.requireActual<typeof import('@node-rs/argon2')>('@node-rs/argon2');
    const verifications = jest.spyOn(argon2, 'verify');
    try {
      const phc = await hasher.hash('plain-ascii-secret');
      gate.mockClear();
      verifications.mockClear();
      // a wrong guess that NFKC changes (full-width letters): one argon2 run, not two
      expect(await hasher.verify(phc, '\uff50lain-ascii-secreT')).toBe(false);
      expect([gate.mock.calls.length, verifications.mock.calls.length]).toEqual([1, 1]);
      // a legacy hash: the form it was made in, once
      const legacy = await hash('x-legacy-secret', {
        algorithm: Algorithm.Argon2id,
        ...OWASP_MINIMUM,
      });
      gate.mockClear();
      verifications.mockClear();
      expect(await hasher.verify(legacy, '\uff58-legacy-secreT')).toBe(false);
      expect([gate.mock.calls.length, verifications.mock.calls.length]).toEqual([1, 1]);
      // and an unknown email's dummy check: the same one run
      await hasher.verifyDummy('warm-up');
      gate.mockClear();
      verifications.mockClear();
      await hasher.verifyDummy('\uff58-legacy-secreT');
      expect([gate.mock.calls.length, verifications.mock.calls.length]).toEqual([1, 1]);
    } finally {
      gate.mockRestore();
      verifications.mockRestore();
    }
  });

  it('answers false, never throws, for a malformed stored hash', async () => {
    expect(await hasher.verify('not-a-hash', 'whatever')).toBe(false);
  });

  it('verifies unknown emails against a dummy hash: always false', async () => {
    expect(await hasher.verifyDummy('anything')).toBe(false);
  });

  it('refuses to be configured below the OWASP minimum', () => {
    expect(
      () => new PasswordHasher(new SecureRandom(), { ...OWASP_MINIMUM, memoryCost: 8192 }),
    ).toThrow(/OWASP/);
    expect(() => new PasswordHasher(new SecureRandom(), { ...OWASP_MINIMUM, timeCost: 1 })).toThrow(
      /OWASP/,
    );
  });

  describe('needsRehash', () => {
    it('is false for a hash made with the current parameters', async () => {
      expect(hasher.needsRehash(await hasher.hash('pw-pw-pw-pw'))).toBe(false);
    });

    it('is true for weaker parameters, another algorithm or garbage', async () => {
      const weak = await hash('pw-pw-pw-pw', {
        algorithm: Algorithm.Argon2id,
        memoryCost: 4096,
        timeCost: 1,
        parallelism: 1,
      });
      const argon2i = await hash('pw-pw-pw-pw', { algorithm: Algorithm.Argon2i, ...OWASP_MINIMUM });
      expect(hasher.needsRehash(weak)).toBe(true);
      expect(hasher.needsRehash(argon2i)).toBe(true);
      expect(hasher.needsRehash('$2b$10$bcrypt-hash')).toBe(true);
    });

    it('is true once the parameters are raised, and the new hash carries them', async () => {
      const before = await hasher.hash('pw-pw-pw-pw');
      const raised = new PasswordHasher(new SecureRandom(), { ...OWASP_MINIMUM, timeCost: 3 });
      expect(raised.needsRehash(before)).toBe(true);
      const after = await raised.hash('pw-pw-pw-pw');
      expect(parseParams(after)).toEqual({ m: 19_456, t: 3, p: 1 });
      expect(raised.needsRehash(after)).toBe(false);
      expect(hasher.needsRehash(after)).toBe(false); // stronger than needed is fine
    });
  });
});

describe('PasswordHasher concurrency', () => {
  it('runs at most PASSWORD_HASH_CONCURRENCY argon2 computations at once and refuses the overflow with 503', async () => {
    const hasher = new PasswordHasher(new SecureRandom(), undefined, {
      passwordHashConcurrency: 1,
    });
    const phc = await hasher.hash('correct-horse-battery');
    let peak = 0;
    const watch = setInterval(() => (peak = Math.max(peak, hasher.gate.active)), 1);
    try {
      const burst = Array.from({ length: HASH_QUEUE_LIMIT + 8 }, () =>
        hasher.verify(phc, 'wrong-password').then(
          (ok) => (ok ? 'ok' : 'wrong'),
          (e: { code?: string }) => e.code,
        ),
      );
      const answers = await Promise.all(burst);
      // one runs, HASH_QUEUE_LIMIT wait, the overflow (7) is refused at once; the waiting ones
      // are verified one at a time (or refused after HASH_MAX_WAIT_MS on a very slow machine)
      expect(answers.filter((a) => a === 'SERVICE_UNAVAILABLE').length).toBeGreaterThanOrEqual(7);
      expect(answers.every((a) => a === 'wrong' || a === 'SERVICE_UNAVAILABLE')).toBe(true);
      expect(peak).toBeLessThanOrEqual(1);
    } finally {
      clearInterval(watch);
    }
  });
});

describe('PasswordHasher places per client network', () => {
  it('one IPv6 /48, and one IPv4 address, holds at most HASH_PLACES_PER_NETWORK places; another network or address, and loopback, are not held back', async () => {
    const hasher = new PasswordHasher(new SecureRandom(), undefined, {
      passwordHashConcurrency: 1,
    });
    const phc = await hasher.hash('correct-horse-battery');
    const verify = (client: string, priority = true) =>
      hasher.verify(phc, 'correct-horse-battery', { client, priority }).then(
        (ok) => (ok ? 'ok' : 'wrong'),
        (e: { code?: string }) => e.code,
      );
    const places = Array(HASH_PLACES_PER_NETWORK).fill('ok');
    // a host signing in from many /64s of its /48 (each one of its account's own clients: the
    // priority lane): the fifth at once is refused, whatever its /64
    const flood = Array.from({ length: HASH_PLACES_PER_NETWORK + 1 }, (_, i) =>
      verify(`2001:db8:5:${i + 1}::1`),
    );
    // an IPv4 address likewise, in either lane and either spelling (unheld, two addresses with
    // login-ip's 20 sign-ins each at once filled the queue)
    const v4 = [
      ...Array.from({ length: HASH_PLACES_PER_NETWORK }, () => verify('203.0.113.9', false)),
      verify('::ffff:203.0.113.9'),
    ];
    const neighbour = verify('203.0.113.10'); // another address: waits its turn
    const owner = verify('2001:db8:6::1'); // another network: waits its turn
    const local = Array.from({ length: HASH_PLACES_PER_NETWORK + 1 }, () => verify('127.0.0.1'));
    const answers = await Promise.all([...flood, ...v4, neighbour, owner, ...local]);
    expect(answers.slice(0, 5).sort()).toEqual(['SERVICE_UNAVAILABLE', ...places]);
    expect(answers.slice(5, 10)).toEqual([...places, 'SERVICE_UNAVAILABLE']);
    expect(answers.slice(10)).toEqual(Array(2 + HASH_PLACES_PER_NETWORK + 1).fill('ok'));
    // a place is held while it runs or waits, no longer: the address is served again
    expect(await verify('203.0.113.9')).toBe('ok');
  });
});
