/**
 * Rotating JWT_SECRET on a rolling fleet (README, "Rotating the JWT key"). Two API processes on
 * one database and one Redis key space are restarted one at a time through the procedure's
 * steps — 1: every process accepts the NEW key (JWT_VERIFY_ONLY_SECRET) while the OLD one signs;
 * 2: NEW signs, OLD is accepted; 3: OLD removed — and at every moment every access token and
 * listing cursor either process handed out is tried at both. Through steps 1 and 2 none is
 * refused (a process on one key had refused the other's: ~25% of requests 401 through a roll,
 * each a refresh spent); once OLD is removed, what it signed or sealed is refused at once (after
 * a leak, that is the point), and what NEW did still works.
 */
import Redis from 'ioredis';
import { randomBytes } from 'node:crypto';
import { registerCustomer } from '../support/auth';
import { insertProduct } from '../support/fixtures';
import { TestApp, bootTestApp } from '../support/test-app';
import { TestDatabase, createTestDatabase } from '../support/test-database';

type Name = 'a' | 'b';

/** What one process handed out, and under which key. */
interface Issued {
  what: string;
  key: 'OLD' | 'NEW';
  accessToken: string;
  /** The session's refresh token, where this is its latest. */
  refreshToken?: string;
  cursor: string;
}

describe('rotating the JWT key through a rolling restart (JWT_VERIFY_ONLY_SECRET)', () => {
  const OLD = randomBytes(36).toString('base64');
  const NEW = randomBytes(36).toString('base64');
  const prefix = `rot${randomBytes(3).toString('hex')}`;
  const config = {
    before: { JWT_SECRET: OLD },
    step1: { JWT_SECRET: OLD, JWT_VERIFY_ONLY_SECRET: NEW },
    step2: { JWT_SECRET: NEW, JWT_VERIFY_ONLY_SECRET: OLD },
    after: { JWT_SECRET: NEW },
  } as const;
  type Step = keyof typeof config;
  const fleet: Partial<Record<Name, { app: TestApp; step: Step }>> = {};
  let db: TestDatabase;
  const issued: Issued[] = [];

  /** Restarts process `name` (or starts it) configured as `step`: the other keeps serving. */
  const roll = async (name: Name, step: Step) => {
    await fleet[name]?.app.close();
    delete fleet[name];
    const app = await bootTestApp({ db, env: { REDIS_KEY_PREFIX: prefix, ...config[step] } });
    fleet[name] = { app, step };
  };
  const at = (name: Name) => fleet[name]!.app;

  /** The next cursor of the listing's first page, as process `name` answers it. */
  const firstCursorAt = async (name: Name) => {
    const first = await at(name).http.get('/v1/products?limit=1');
    expect(first.status).toBe(200);
    expect(typeof first.body.nextCursor).toBe('string');
    return first.body.nextCursor as string;
  };

  /**
   * A customer signs up at `name`, and refreshes at the other process; the listing's first page
   * is read at each: every token and cursor each process makes now.
   */
  const issueAt = async (name: Name, moment: string) => {
    const other: Name = name === 'a' ? 'b' : 'a';
    const keyOf = (n: Name) =>
      fleet[n]!.step === 'step2' || fleet[n]!.step === 'after' ? 'NEW' : 'OLD';
    const session = await registerCustomer(at(name).http);
    const refreshed = await at(other).http.post('/v1/auth/refresh', {
      refreshToken: session.refreshToken,
    });
    expect([moment, refreshed.status]).toEqual([moment, 200]);
    issued.push(
      {
        what: `${moment}: signed up at ${name}`,
        key: keyOf(name),
        accessToken: session.accessToken,
        cursor: await firstCursorAt(name),
      },
      {
        what: `${moment}: refreshed at ${other}`,
        key: keyOf(other),
        accessToken: refreshed.body.accessToken as string,
        refreshToken: refreshed.body.refreshToken as string,
        cursor: await firstCursorAt(other),
      },
    );
  };

  /** How each process answers every token and cursor handed out so far. */
  const answers = async () => {
    const seen: Record<string, string> = {};
    for (const item of issued) {
      const statuses: string[] = [];
      for (const name of ['a', 'b'] as const) {
        const me = await at(name).http.get('/v1/me', { token: item.accessToken });
        const page = await at(name).http.get(`/v1/products?limit=1&cursor=${item.cursor}`);
        statuses.push(`${name} ${me.status}/${page.status}`);
      }
      seen[`${item.what} (${item.key})`] = statuses.join(', ');
    }
    return seen;
  };
  /** Every token and cursor handed out so far, answered as `expected(item)` says by both. */
  const expectAnswers = async (expected: (item: Issued) => string) => {
    expect(await answers()).toEqual(
      Object.fromEntries(issued.map((item) => [`${item.what} (${item.key})`, expected(item)])),
    );
  };
  const everywhere = 'a 200/200, b 200/200';

  beforeAll(async () => {
    db = await createTestDatabase();
    for (let i = 0; i < 3; i++) await insertProduct(db.pool, { stock: 5, priceAmount: 1000 + i });
    await roll('a', 'before');
    await roll('b', 'before');
  });
  afterAll(async () => {
    for (const name of ['a', 'b'] as const) await fleet[name]?.app.close();
    await db?.drop();
    const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    try {
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length > 0) await redis.unlink(...keys);
    } finally {
      redis.disconnect();
    }
  });

  it("refuses no valid token or cursor at any moment of the two-step roll, and refuses the old key's at once when it is removed", async () => {
    await issueAt('a', 'before');
    await issueAt('b', 'before');
    await expectAnswers(() => everywhere);

    // step 1: NEW is accepted everywhere before anything signs with it
    await roll('b', 'step1');
    await issueAt('b', 'step 1, half rolled');
    await expectAnswers(() => everywhere);
    await roll('a', 'step1');
    await issueAt('a', 'step 1 done');
    await expectAnswers(() => everywhere);

    // step 2: NEW signs, OLD is accepted — a process still on step 1 accepts NEW's tokens
    await roll('b', 'step2');
    await issueAt('b', 'step 2, half rolled');
    await issueAt('a', 'step 2, half rolled');
    await expectAnswers(() => everywhere);
    await roll('a', 'step2');
    await issueAt('a', 'step 2 done');
    await expectAnswers(() => everywhere);
    expect(new Set(issued.map((i) => i.key))).toEqual(new Set(['OLD', 'NEW']));

    // step 3 (after a leak: at once): OLD removed — what it signed or sealed is refused by each
    // process as soon as that process is restarted without it; NEW's works everywhere
    await roll('b', 'after');
    await expectAnswers((item) => (item.key === 'NEW' ? everywhere : 'a 200/200, b 401/400'));
    await roll('a', 'after');
    await issueAt('a', 'after');
    await expectAnswers((item) => (item.key === 'NEW' ? everywhere : 'a 401/400, b 401/400'));
    // a client whose access token was refused refreshes (refresh tokens are no JWTs) and goes on
    const refused = issued.find((item) => item.key === 'OLD' && item.refreshToken)!;
    const again = await at('b').http.post('/v1/auth/refresh', {
      refreshToken: refused.refreshToken,
    });
    expect(again.status).toBe(200);
    for (const name of ['a', 'b'] as const) {
      expect((await at(name).http.get('/v1/me', { token: again.body.accessToken })).status).toBe(
        200,
      );
    }
  });

  it("a one-step roll (the new key signing at once, the old one accepted) refuses the new key's tokens at every process not yet rolled: why step 1 comes first", async () => {
    issued.length = 0;
    await roll('a', 'before');
    await roll('b', 'step2');
    await issueAt('a', 'one step, half rolled');
    await issueAt('b', 'one step, half rolled');
    // the old key's work everywhere; the new key's only where it is known
    await expectAnswers((item) => (item.key === 'OLD' ? everywhere : 'a 401/400, b 200/200'));
  });
});
