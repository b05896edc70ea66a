import type { INestApplicationContext } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { LONG_RUNNING, stallAwareClient } from '../../src/database/stall-aware-client';
import { TestApp, bootTestApp } from '../support/test-app';
import { outcomeAcrossStall } from '../support/event-loop-stall';
import { bootTestWorker } from '../support/test-worker';

/**
 * Runs the statements one after another on one fresh stall-aware client; the first one's error
 * message, or 'answered' once all are.
 */
async function outcome(
  silenceMs: number,
  longRunningMs: number,
  url: string,
  ...statements: string[]
): Promise<string> {
  const StallAware = stallAwareClient(silenceMs, longRunningMs);
  const client = new StallAware({ connectionString: url });
  client.on('error', () => undefined); // (the destroyed connection's own error event)
  await client.connect();
  try {
    for (const sql of statements) await client.query(sql);
    return 'answered';
  } catch (err) {
    return (err as Error).message;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * The silence limit of a pool connection (DATABASE_QUERY_TIMEOUT_MS) is the same in the worker
 * as in the API; only a statement marked LONG_RUNNING (the recommendations' recomputation) may be
 * silent for minutes. The worker used to allow every statement 10 minutes — its outbox relay,
 * expiries and emails stood still that long behind a stalled or failed-over server — for the sake
 * of that one batch statement. (pg_sleep is a statement with nothing to send back meanwhile.)
 */
describe('statements the server is silent on', () => {
  let t: TestApp;
  let worker: INestApplicationContext | undefined;
  beforeAll(async () => {
    t = await bootTestApp({ env: { DATABASE_QUERY_TIMEOUT_MS: '1000' } });
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
  });

  it('an ordinary statement is given up after the silence limit; one marked long-running only after its own', async () => {
    const url = t.db.url;
    expect(await outcome(300, 1_500, url, 'SELECT pg_sleep(0.9)')).toMatch(
      /Query read timeout: PostgreSQL sent nothing for 300 ms/,
    );
    expect(await outcome(300, 1_500, url, `/* ${LONG_RUNNING} */ SELECT pg_sleep(0.9)`)).toBe(
      'answered',
    );
    expect(await outcome(300, 1_500, url, `/* ${LONG_RUNNING} */ SELECT pg_sleep(3)`)).toMatch(
      /Query read timeout: PostgreSQL sent nothing for 1500 ms/,
    );
    // each statement is allowed its own silence: three in a row on one connection, each within it
    // (counted per statement, not over the connection's life: over TLS no raw-socket data resets it)
    const long = `/* ${LONG_RUNNING} */ SELECT pg_sleep(0.9)`;
    expect(await outcome(300, 1_500, url, long, long, long)).toBe('answered');
  });

  it('an answer that came while this process was busy is read before the silence is judged', async () => {
    const StallAware = stallAwareClient(300);
    const client = new StallAware({ connectionString: t.db.url });
    client.on('error', () => undefined);
    await client.connect();
    try {
      // the event loop held for over three limits (a long GC, a busy loop): the answer comes
      // meanwhile, and the silence timer is due before the socket is read
      expect(await outcomeAcrossStall(client, 'SELECT pg_sleep(0.1)', 1_000)).toBe('answered');
      // … and the connection still serves, its silence still judged
      expect(await client.query('SELECT 1 AS one')).toMatchObject({ rows: [{ one: 1 }] });
      await expect(client.query('SELECT pg_sleep(2)')).rejects.toThrow(
        /Query read timeout: PostgreSQL sent nothing for 300 ms/,
      );
    } finally {
      await client.end().catch(() => undefined);
    }
  });

  it('a statement the server wrote to (a notice) while this process was busy is not silent: its limit runs from what came', async () => {
    const StallAware = stallAwareClient(500);
    const client = new StallAware({ connectionString: t.db.url });
    client.on('error', () => undefined);
    await client.connect();
    try {
      // a notice at once, the answer at 0.9 s: no silence of 500 ms after the notice
      // busy until 0.7 s, the notice unread: the silence timer is due, the statement still out
      expect(
        await outcomeAcrossStall(
          client,
          `DO $$BEGIN RAISE NOTICE 'working'; PERFORM pg_sleep(0.9); END$$`,
          700,
        ),
      ).toBe('answered');
    } finally {
      await client.end().catch(() => undefined);
    }
  });

  it('a statement marked long-running counts only its silences: a period in which the server wrote (read late, after a stall) is none', async () => {
    const StallAware = stallAwareClient(1_000, 4_000);
    const client = new StallAware({ connectionString: t.db.url });
    client.on('error', () => undefined);
    await client.connect();
    try {
      // a notice at 0.5 s, the answer at 5 s: silent 4.5 s after the notice, within its 4 s
      // allowance counted in whole periods from when the notice was read (1.5 s: given up at 5.5)
      // busy until 1.5 s: the first period's timer is due before the notice is read (counted as
      // a silence, the allowance ran out at 4.5 s)
      expect(
        await outcomeAcrossStall(
          client,
          `/* ${LONG_RUNNING} */ DO $$BEGIN PERFORM pg_sleep(0.5); RAISE NOTICE 'working'; PERFORM pg_sleep(4.5); END$$`,
          1_500,
        ),
      ).toBe('answered');
      await expect(client.query(`/* ${LONG_RUNNING} */ SELECT pg_sleep(6)`)).rejects.toThrow(
        /Query read timeout: PostgreSQL sent nothing for 4000 ms/,
      );
    } finally {
      await client.end().catch(() => undefined);
    }
  }, 30_000);

  it("the worker's pool gives an ordinary statement the same limit as the API's", async () => {
    worker = await bootTestWorker(t.config);
    const db = worker.get(DataSource);
    const started = Date.now();
    await expect(db.query('SELECT pg_sleep(4)')).rejects.toThrow(/Query read timeout/);
    expect(Date.now() - started).toBeLessThan(3_500);
    // the marked statement is allowed its minutes
    await expect(db.query(`/* ${LONG_RUNNING} */ SELECT pg_sleep(2)`)).resolves.toBeDefined();
  });
});
