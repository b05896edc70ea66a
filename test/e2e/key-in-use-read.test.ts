import { TransactionHost } from '../../src/database/transaction-host';
import { IdempotencyRepository } from '../../src/idempotency/idempotency.repository';
import { IdempotencyService } from '../../src/idempotency/idempotency.service';
import { TestApp, bootTestApp } from '../support/test-app';

// The sold-out fast path asks the database whether a key is in use (IdempotencyService#keyInUse),
// a question that takes each pair's advisory lock until its statement ends. Two ways that went
// wrong: a question that waited for a busy pool past its askers' 250 ms still went out later and
// locked a key whose request had meanwhile taken the normal path (whose claim then answered 409
// IDEMPOTENCY_KEY_IN_USE to a first request); and one statement asked for every waiting pair at
// once, thousands of locks in PostgreSQL's server-wide lock table.
describe('the key-in-use question of the sold-out fast path', () => {
  let t: TestApp;
  let service: IdempotencyService;
  /** The keys each statement was sent with (read once the statement had its connection). */
  let sent: string[][];
  /** The most statements in flight at once. */
  let concurrent = 0;
  let mostConcurrent = 0;

  beforeAll(async () => {
    t = await bootTestApp({ env: { DATABASE_POOL_SIZE: '2' } });
    service = t.app.get(IdempotencyService);
    const repo = t.app.get(IdempotencyRepository);
    const original = repo.keysInUse.bind(repo);
    jest.spyOn(repo, 'keysInUse').mockImplementation(async (pairs) => {
      mostConcurrent = Math.max(mostConcurrent, ++concurrent);
      try {
        return await original(() => {
          const asked = pairs();
          sent.push(asked.map((p) => p.key));
          return asked;
        });
      } finally {
        concurrent--;
      }
    });
  });
  afterAll(async () => {
    await t?.close();
  });
  beforeEach(() => {
    sent = [];
    mostConcurrent = 0;
  });

  it('is not sent for an asker that gave up while the pool was busy', async () => {
    const tx = t.app.get(TransactionHost);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let holding = 0;
    const holders = [1, 2].map(() =>
      tx.run(async () => {
        await tx.query('SELECT 1');
        holding++;
        await gate;
      }),
    );
    try {
      while (holding < 2) await new Promise((r) => setTimeout(r, 5));
      // the pool is held: the question cannot go out, and the asker takes the normal path
      expect(await service.keyInUse('user:late', 'k-late')).toBe(true);
    } finally {
      release();
      await Promise.all(holders);
    }
    // the next question goes out once the one in flight has its connection: the late key is
    // in neither
    expect(await service.keyInUse('user:late', 'k-after')).toBe(false);
    expect(sent.flat()).toEqual(['k-after']);
  });

  it('asks at most 256 pairs per statement, one statement at a time', async () => {
    const answers = await Promise.all(
      Array.from({ length: 600 }, (_, i) => service.keyInUse(`user:${i}`, `k-${i}`)),
    );
    const answered = answers.filter((inUse) => !inUse).length;
    // every ask is answered; those that waited past 250 ms for their turn took the normal path
    // and were not asked for
    expect(answered).toBeGreaterThan(0);
    expect(Math.max(...sent.map((keys) => keys.length))).toBeLessThanOrEqual(256);
    expect(new Set(sent.flat()).size).toBe(sent.flat().length);
    expect(sent.flat().length).toBe(answered);
    expect(mostConcurrent).toBe(1);
  });
});
