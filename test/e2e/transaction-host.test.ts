import { RolledBackAtCommit, TransactionHost } from '../../src/database/transaction-host';
import { TestApp, bootTestApp } from '../support/test-app';
import { withAdminClient } from '../support/databases';

/** The one-message BEGIN/COMMIT paths must never hand a connection back inside a transaction. */
describe('TransactionHost (pool of one connection)', () => {
  let t: TestApp;
  let tx: TransactionHost;
  beforeAll(async () => {
    t = await bootTestApp({ env: { DATABASE_POOL_SIZE: '1' } });
    tx = t.app.get(TransactionHost);
  });
  afterAll(async () => {
    await t?.close();
  });

  const healthy = async () =>
    expect(await tx.query<{ v: number }>('SELECT 1 AS v')).toEqual([{ v: 1 }]);

  it('a failing opening statement is rolled back; the connection stays usable', async () => {
    await expect(tx.runOpeningWith('SELECT 1/$1::int', [0], async () => 'never')).rejects.toThrow(
      /division by zero/,
    );
    await healthy();
    expect(await tx.runOpeningWith('SELECT $1::int AS v', [7], async (rows) => rows)).toEqual([
      { v: 7 },
    ]);
    await healthy();
  });

  it("runs a checkout again past the collisions' 3 attempts when a line's price changed under it (up to 10 times more), then gives up", async () => {
    // reserve_stock's price_changed (40001) in the COMMIT message, as repricings one by one make it
    const repricedUntil = (n: number) => {
      let attempts = 0;
      return tx.run(async () => {
        attempts++;
        if (attempts <= n)
          tx.sendWithCommit(`SELECT raise_price_changed('[]'::jsonb)`, [], { last: true });
        return attempts;
      });
    };
    expect(await repricedUntil(5)).toBe(6);
    await expect(repricedUntil(20)).rejects.toThrow(/price_changed/);
    await healthy();
  });

  it('an attempt whose connection dies before its COMMIT is run again, once, on another connection; one that dies with its COMMIT too, once the server says it rolled back', async () => {
    await tx.query(`CREATE TABLE IF NOT EXISTS tx_blink (v int)`);
    const dying = (deaths: number) => {
      let attempts = 0;
      const done = tx.run(async () => {
        attempts++;
        await tx.query(`INSERT INTO tx_blink VALUES ($1::int)`, [deaths]);
        // the server ends this connection's backend under the work (a blink, a pooler's reset)
        if (attempts <= deaths) await tx.query(`SELECT pg_terminate_backend(pg_backend_pid())`);
        return attempts;
      });
      return done;
    };
    expect(await dying(1)).toBe(2); // run again once: committed then
    await expect(dying(2)).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' }); // not twice
    await healthy();
    // the connection dies with the COMMIT's message: the outcome is asked, and the server rolled
    // it back, so it is run again once — here dying the same way, then 503, nothing written
    let attempts = 0;
    await expect(
      tx.run(async () => {
        attempts++;
        await tx.query(`INSERT INTO tx_blink VALUES (9)`);
        tx.sendWithCommit(`SELECT pg_terminate_backend(pg_backend_pid())`, [], { last: true });
      }),
    ).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    expect(attempts).toBe(2);
    await healthy();
    expect(await tx.query(`SELECT v FROM tx_blink ORDER BY v`)).toEqual([{ v: 1 }]);
  });

  it('run again after its connection died, where the database refuses the new one (a restart): answered as the blink it began with (Retry-After 1)', async () => {
    const allow = (yes: boolean) =>
      withAdminClient((c) => c.query(`ALTER DATABASE "${t.db.name}" ALLOW_CONNECTIONS ${yes}`));
    let attempts = 0;
    try {
      const refused = await tx
        .run(async () => {
          attempts++;
          if (attempts === 1) {
            await allow(false);
            await tx.query(`SELECT pg_terminate_backend(pg_backend_pid())`);
          }
        })
        .catch((err: unknown) => err);
      expect(refused).toMatchObject({
        code: 'SERVICE_UNAVAILABLE',
        options: { headers: { 'Retry-After': '1' } },
      });
    } finally {
      await allow(true);
    }
    expect(attempts).toBe(1);
    await healthy();
  });

  it('a failing statement sent with COMMIT rolls everything back', async () => {
    await tx.query(`CREATE TABLE IF NOT EXISTS tx_probe (v int)`);
    await expect(
      tx.run(async () => {
        await tx.query(`INSERT INTO tx_probe VALUES (1)`);
        tx.sendWithCommit('INSERT INTO tx_probe VALUES ($1::int)', [2]);
        tx.sendWithCommit('SELECT 1/$1::int', [0], {
          last: true,
          mapError: () => new Error('mapped'),
        });
      }),
    ).rejects.toThrow('mapped');
    expect(await tx.query(`SELECT count(*)::int AS n FROM tx_probe`)).toEqual([{ n: 0 }]);
    await tx.run(async () => {
      tx.sendWithCommit('INSERT INTO tx_probe VALUES ($1::int)', [3]);
    });
    expect(await tx.query(`SELECT v FROM tx_probe`)).toEqual([{ v: 3 }]);
    await healthy();
  });

  it('sends opening reads with BEGIN: each taken once, by its key, in its transaction only', async () => {
    const reads = [
      { key: 'a', sql: 'SELECT $1::int AS a', params: [1] },
      { key: 'b', sql: 'SELECT $1::int AS b', params: [2] },
    ];
    const seen = await tx.runOpening(
      [{ sql: 'SELECT $1::int AS own', params: [0] }],
      async (results) => ({
        results,
        b: tx.takeOpened('b'),
        bAgain: tx.takeOpened('b'),
        other: tx.takeOpened('c'),
        a: tx.takeOpened('a'),
      }),
      reads,
    );
    expect(seen).toEqual({
      results: [[{ own: 0 }]],
      b: [{ b: 2 }],
      bAgain: undefined,
      other: undefined,
      a: [{ a: 1 }],
    });
    expect(tx.takeOpened('a')).toBeUndefined(); // outside the transaction
    await healthy();
  });
  it('work that swallowed a failed statement is not reported as committed (COMMIT answered ROLLBACK)', async () => {
    await tx.query(`CREATE TABLE IF NOT EXISTS tx_swallow (v int)`);
    const observed: string[] = [];
    await expect(
      tx.run(async () => {
        await tx.query(`INSERT INTO tx_swallow VALUES (1)`);
        tx.afterCommit(() => observed.push('after commit'));
        await tx.query('SELECT 1/$1::int', [0]).catch(() => undefined);
        return 'pretends to have written';
      }),
    ).rejects.toBeInstanceOf(RolledBackAtCommit);
    expect(observed).toEqual([]);
    expect(await tx.query(`SELECT count(*)::int AS n FROM tx_swallow`)).toEqual([{ n: 0 }]);
    await healthy();
  });

  it('a throwing after-commit callback neither fails the committed work nor skips the others', async () => {
    await tx.query(`CREATE TABLE IF NOT EXISTS tx_after (v int)`);
    const observed: string[] = [];
    const value = await tx.run(async () => {
      await tx.query(`INSERT INTO tx_after VALUES (1)`);
      tx.afterCommit(() => {
        throw new Error('a broken metric');
      });
      tx.afterCommit(() => observed.push('second'));
      return 'written';
    });
    expect(value).toBe('written');
    expect(observed).toEqual(['second']);
    expect(await tx.query(`SELECT count(*)::int AS n FROM tx_after`)).toEqual([{ n: 1 }]);
    await healthy();
  });
});
