import { Client } from 'pg';
import { TransactionHost } from '../../src/database/transaction-host';
import { PrivatePostgres } from '../support/private-postgres';
import { TestApp, bootTestApp } from '../support/test-app';
import type { TestDatabase } from '../support/test-database';

/**
 * A COMMIT whose answer was lost is looked up by the transaction's id (pg_xact_status). PostgreSQL
 * writes nothing when it hands an id out, so after a crash the id of a transaction none of whose
 * work reached the log (a checkout's: all of it travels with the COMMIT) is handed out again — and
 * the lookup found that other transaction committed: the request answered 201 (or 204: a logout,
 * a password change) for work that never happened. After a restart a "committed" cannot be told
 * from the new owner's: unknown (503; a retry with the key runs afresh or is replayed).
 */
describe('a COMMIT lost to a database crash, its transaction id handed out again after the restart', () => {
  let pg: PrivatePostgres;
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    pg = await PrivatePostgres.start();
    db = await pg.migratedDatabase();
    await db.pool.query(`CREATE TABLE crash_probe (v int)`);
    t = await bootTestApp({ db });
  }, 120_000);
  afterAll(async () => {
    await t?.close();
    await db?.drop();
    await pg?.destroy();
  });

  /** A transaction of another client, committed, with its id (once the server takes connections again). */
  async function commitElsewhere(): Promise<string> {
    let c!: Client;
    for (let attempt = 0; ; attempt++) {
      c = new Client({ connectionString: db.url });
      c.on('error', () => undefined); // (a failure surfaces from the call that met it)
      try {
        await c.connect();
        break;
      } catch (err) {
        await c.end().catch(() => undefined);
        if (attempt >= 100) throw err;
        await new Promise((r) => setTimeout(r, 100)); // crash recovery
      }
    }
    try {
      await c.query('BEGIN');
      const { rows } = await c.query<{ xid: string }>(`SELECT pg_current_xact_id()::text AS xid`);
      await c.query(`INSERT INTO crash_probe VALUES (2)`);
      await c.query('COMMIT');
      return rows[0].xid;
    } finally {
      await c.end();
    }
  }

  /**
   * A transaction whose work travels with its COMMIT, the database crashing (`crash`) before that
   * COMMIT is sent, and another client's transaction committing after the recovery: the outcome
   * run() answered, and the two transaction ids.
   */
  async function lostToCrash(crash: () => Promise<void>) {
    const tx = t.app.get(TransactionHost);
    await db.pool.query(`DELETE FROM crash_probe`);
    let ours = '';
    let theirs = '';
    const outcome = await tx
      .run(async () => {
        ours = (await tx.query<{ xid: string }>(`SELECT pg_current_xact_id()::text AS xid`))[0].xid;
        // the work, sent with the COMMIT: nothing of it in the log before the crash
        tx.sendWithCommit(`INSERT INTO crash_probe VALUES (1)`, []);
        await crash();
        theirs = await commitElsewhere();
        return 'answered';
      })
      .then(
        (v) => v,
        (err: Error) => `failed: ${err.message}`,
      );
    // the scenario itself: the id was handed out again, and its new owner committed
    expect(theirs).toBe(ours);
    expect((await db.pool.query(`SELECT v FROM crash_probe ORDER BY v`)).rows).toEqual([{ v: 2 }]);
    return outcome;
  }

  it("is not reported committed for the id's new owner", async () => {
    const outcome = await lostToCrash(async () => {
      await pg.stop('immediate');
      await pg.start();
    });
    expect(outcome).toMatch(/^failed: /);
  }, 120_000);

  it("is not reported committed for the id's new owner after one backend crashed (the server reinitialised without restarting)", async () => {
    // a backend killed (the OOM killer, a segfault): PostgreSQL ends every session and recovers,
    // its postmaster — and pg_postmaster_start_time() — unchanged
    const victim = new Client({ connectionString: db.url });
    victim.on('error', () => undefined);
    await victim.connect();
    const pid = (await victim.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    // another session, ended by the postmaster when it reacts to the crash: a connection opened
    // before that (the next statement, on a loaded machine) was ended with the rest
    const witness = new Client({ connectionString: db.url });
    witness.on('error', () => undefined);
    await witness.connect();
    const everyoneEnded = new Promise<void>((resolve) => witness.once('end', () => resolve()));
    const outcome = await lostToCrash(async () => {
      process.kill(pid, 'SIGKILL');
      await everyoneEnded;
    });
    await victim.end().catch(() => undefined);
    expect(outcome).toMatch(/^failed: /);
  }, 120_000);
});
