import type { INestApplicationContext } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { ImagesService } from '../../src/catalog/images.service';
import { MaintenanceService } from '../../src/maintenance/maintenance.service';
import { EmailReconciler } from '../../src/notifications/email-reconciler';
import { PaymentFinalizer } from '../../src/payments/payment-finalizer.service';
import { JobQueues } from '../../src/queue/job-queues';
import { JobName } from '../../src/queue/queues';
import { Schedulers } from '../../src/queue/schedulers';
import { PASS_LOCK_CLASS } from '../../src/queue/scheduled-pass-locks';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * BullMQ's job scheduler adds a period's job when the previous one starts, so a reconciliation
 * pass that outlasts its minute (a slow payment provider) ran beside the next ones — on both
 * workers, several per worker (the payments queue runs 4 jobs at once) — each asking the provider
 * about the same payments. A scheduled pass now runs only while no other pass of it does.
 */
describe('scheduled passes run one at a time across workers', () => {
  let t: TestApp;
  const workers: INestApplicationContext[] = [];
  /** Passes inside reconcile() now, and the most there were at once. */
  let inside = 0;
  let most = 0;
  let entered = 0;
  let open!: () => void;
  let gate: Promise<void>;

  beforeAll(async () => {
    t = await bootTestApp();
    // no job schedulers: the passes here are the test's own (a scheduled one would run beside them)
    jest.spyOn(Schedulers.prototype, 'onApplicationBootstrap').mockImplementation(() => undefined);
    for (let i = 0; i < 2; i++) workers.push(await bootTestWorker(t.config));
    gate = new Promise<void>((resolve) => (open = resolve));
    for (const worker of workers) {
      jest.spyOn(worker.get(PaymentFinalizer), 'reconcile').mockImplementation(async () => {
        inside++;
        entered++;
        most = Math.max(most, inside);
        await gate;
        inside--;
        return 0;
      });
    }
  });
  afterAll(async () => {
    open?.();
    for (const worker of workers) await worker.close();
    await t?.close();
  });

  const jobs = () => workers[0].get(JobQueues);
  const add = () =>
    jobs().add(JobName.ReconcilePayments, {}, { jobId: `test-reconcile-${randomUUID()}` });
  const states = (ids: string[]) =>
    Promise.all(
      ids.map(async (id) => {
        const state = await (await jobs().find(JobName.ReconcilePayments, id))?.getState();
        // read again once its state is known: a job read while active has no return value yet
        const job = await jobs().find(JobName.ReconcilePayments, id);
        return { state, value: job?.returnvalue };
      }),
    );

  it('a pass added while one runs is skipped, on either worker; the next one after it runs', async () => {
    const ids = [] as string[];
    for (let i = 0; i < 4; i++) ids.push((await add()).id as string);
    // one pass holds the gate; the other three end at once, told a pass is running
    const seen = await waitFor(
      'three of the four passes skipped while one runs',
      () => states(ids),
      {
        until: (s) =>
          s.filter((j) => j.state === 'completed').length === 3 &&
          s.some((j) => j.state === 'active'),
      },
    );
    expect(seen.filter((j) => j.state === 'completed').map((j) => j.value)).toEqual(
      Array.from({ length: 3 }, () => ({ skipped: 'pass-running' })),
    );
    expect(most).toBe(1);
    expect(inside).toBe(1);

    open();
    await waitFor('the running pass to finish', () => states(ids), {
      until: (s) => s.every((j) => j.state === 'completed'),
    });
    const before = entered;
    const next = (await add()).id as string;
    const [after] = await waitFor('the next pass to finish', () => states([next]), {
      until: (s) => s[0].state === 'completed',
    });
    expect(after.value).toBe(0);
    expect(entered).toBe(before + 1);
    expect(most).toBe(1);
  });

  it('a pass held by another process is skipped until that process is gone (its session ends)', async () => {
    // another worker process mid-pass, as PostgreSQL sees it: a session holding the pass's lock
    const other = new Client({ connectionString: t.db.url });
    other.on('error', () => undefined); // (its own connection's end, below)
    await other.connect();
    const taken = await other.query(`SELECT pg_try_advisory_lock($1, hashtext($2)) AS held`, [
      PASS_LOCK_CLASS,
      JobName.ReconcilePayments,
    ]);
    expect(taken.rows[0].held).toBe(true);
    const before = entered;
    const skipped = (await add()).id as string;
    const [s] = await waitFor('the pass to end', () => states([skipped]), {
      until: (x) => x[0].state === 'completed',
    });
    expect(s.value).toEqual({ skipped: 'pass-running' });
    expect(entered).toBe(before);

    // that process is killed: its socket closes, PostgreSQL ends the session and the lock with it
    (
      other as unknown as { connection: { stream: { destroy(): void } } }
    ).connection.stream.destroy();
    await waitFor(
      'the other session to be gone',
      async () =>
        (
          await t.db.pool.query(
            `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = hashtext($1)::oid`,
            [JobName.ReconcilePayments],
          )
        ).rowCount === 0,
    );
    const next = (await add()).id as string;
    const [n] = await waitFor('the next pass to finish', () => states([next]), {
      until: (x) => x[0].state === 'completed',
    });
    expect(n.value).toBe(0);
    expect(entered).toBe(before + 1);
  });

  it("a slow housekeeping pass does not hold the others' on its queue: the emails' safety net runs beside a stalled image reconciliation", async () => {
    let release!: () => void;
    const stalled = new Promise<void>((resolve) => (release = resolve));
    let slow = 0;
    const reconciled: boolean[] = [];
    // (the handlers are bound at boot: what they call is stood in for)
    const inner = <T extends object>(service: object, field: string) =>
      (service as Record<string, T>)[field];
    for (const worker of workers) {
      // a store that answers each lookup after seconds; a purge after a sale, thousands of rows
      jest
        .spyOn(
          inner<{ findPending(): Promise<unknown[]> }>(worker.get(ImagesService), 'images'),
          'findPending',
        )
        .mockImplementation(async () => {
          slow++;
          await stalled;
          return [];
        });
      jest
        .spyOn(
          inner<{ purgePublished(): Promise<number> }>(worker.get(MaintenanceService), 'outbox'),
          'purgePublished',
        )
        .mockImplementation(async () => {
          slow++;
          await stalled;
          return 0;
        });
      const deliveries = inner<{ databaseNow(): Promise<Date> }>(
        worker.get(EmailReconciler),
        'deliveries',
      );
      const databaseNow = deliveries.databaseNow.bind(deliveries);
      jest.spyOn(deliveries, 'databaseNow').mockImplementation(() => {
        reconciled.push(true); // (the reconciliation's first step)
        return databaseNow();
      });
    }
    try {
      // the two slow passes take a slot on each of the two workers (one each, one at a time before)
      await jobs().add(JobName.ReconcileImages, {}, { jobId: `test-images-${randomUUID()}` });
      await jobs().add(JobName.PurgeOutbox, {}, { jobId: `test-purge-${randomUUID()}` });
      await waitFor('both slow passes to be running', async () => slow === 2);
      const emails = (
        await jobs().add(JobName.ReconcileEmails, {}, { jobId: `test-emails-${randomUUID()}` })
      ).id as string;
      await waitFor(
        'the email reconciliation to run while they do',
        async () =>
          (await (await jobs().find(JobName.ReconcileEmails, emails))?.getState()) === 'completed',
      );
      expect(reconciled).toEqual([true]);
      expect(slow).toBe(2); // (still running)
    } finally {
      release();
    }
  });
});
