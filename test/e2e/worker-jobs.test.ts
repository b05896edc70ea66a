import type { INestApplicationContext } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { DataSource, getMetadataArgsStorage } from 'typeorm';
import { Logger } from '@nestjs/common';
import { PaymentFinalizer } from '../../src/payments/payment-finalizer.service';
import { JobQueues } from '../../src/queue/job-queues';
import { JOB_QUEUE, JobName } from '../../src/queue/queues';
import { SCHEDULES, Schedulers } from '../../src/queue/schedulers';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * Every scheduled pass, run once through its queue by a real worker against a real database: a
 * pass that cannot run at all fails here, not every hour in production. (The hourly session purge
 * failed every time — one of its tables' entities was registered with no TypeORM module, so the
 * worker's data source did not know it — and only a failed job in Redis said so: its unit test
 * mocked the repository.)
 */
const SRC = join(__dirname, '../../src');

describe('worker jobs through their queues: every scheduled pass runs; malformed data is refused; failures are logged', () => {
  let t: TestApp;
  let worker: INestApplicationContext;

  beforeAll(async () => {
    t = await bootTestApp();
    // no job schedulers: each pass here is the test's own, run once
    jest.spyOn(Schedulers.prototype, 'onApplicationBootstrap').mockImplementation(() => undefined);
    worker = await bootTestWorker(t.config);
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
  });

  it.each(SCHEDULES.map((s) => [s.job, s] as const))('%s completes', async (_name, schedule) => {
    const jobs = worker.get(JobQueues);
    const id = `test-run-${randomUUID()}`;
    await jobs.add(schedule.job, schedule.data, { jobId: id });
    // settled: completed, or failed at its first attempt (its retries would only fail again)
    const job = await waitFor(
      `${schedule.job} to complete or fail`,
      () => jobs.find(schedule.job, id),
      { until: (j) => !!j && (j.finishedOn !== undefined || j.attemptsMade > 0) },
    );
    expect({ job: schedule.job, failed: job?.failedReason ?? null }).toEqual({
      job: schedule.job,
      failed: null,
    });
    expect(await job?.getState()).toBe('completed');
  });

  it("knows every table's entity, in the worker and in the API (an entity no module registers is unknown to the data source)", () => {
    for (const file of readdirSync(SRC, { recursive: true, encoding: 'utf8' })) {
      if (file.endsWith('.entity.ts')) require(join(SRC, file)); // eslint-disable-line @typescript-eslint/no-require-imports
    }
    const declared = getMetadataArgsStorage()
      .tables.map((table) => (table.target as { name: string }).name)
      .sort();
    expect(declared.length).toBeGreaterThanOrEqual(20);
    for (const app of [worker, t.app]) {
      const known = app
        .get(DataSource)
        .entityMetadatas.map((m) => (m.target as { name: string }).name)
        .sort();
      expect(known).toEqual(declared);
    }
  });

  it('a job whose data is malformed (a producer bug, a hand-written job) is refused at once, before its handler: no arbitrary row is acted on, and the log says so', async () => {
    const jobs = worker.get(JobQueues);
    const finalizer = worker.get(PaymentFinalizer);
    const cancel = jest.spyOn(finalizer, 'cancelIntentOf');
    const errors = jest.spyOn(Logger.prototype, 'error');
    const malformed = [
      [JobName.CancelPaymentIntent, {}],
      [JobName.CancelPaymentIntent, { orderId: "x' OR 1=1" }],
      [JobName.ProcessPaymentEvent, { eventId: 42 }],
      [JobName.SendEmail, { orderId: randomUUID(), kind: 'anything' }],
    ] as const;
    for (const [name, data] of malformed) {
      const id = `test-malformed-${randomUUID()}`;
      await jobs.add(name, data as never, { jobId: id });
      const job = await waitFor(
        `${name} ${JSON.stringify(data)} to fail`,
        () => jobs.find(name, id),
        {
          until: (j) => j?.finishedOn !== undefined,
        },
      );
      expect([name, await job?.getState(), job?.attemptsMade]).toEqual([name, 'failed', 1]);
      expect(job?.failedReason).toMatch(/^malformed data: /);
      expect(errors).toHaveBeenCalledWith(
        expect.objectContaining({ jobId: id, queue: JOB_QUEUE[name], job: name }),
        expect.stringMatching(
          new RegExp(
            `job ${name} ${id} failed \\(attempt 1 of 8\\): malformed data: .*not retried`,
          ),
        ),
      );
    }
    expect(cancel).not.toHaveBeenCalled();
    cancel.mockRestore();
    errors.mockRestore();
  });

  it('a job failing for a while is logged as a warning per attempt, naming it and why', async () => {
    const jobs = worker.get(JobQueues);
    const warnings = jest.spyOn(Logger.prototype, 'warn');
    const orderId = randomUUID();
    const cancel = jest
      .spyOn(worker.get(PaymentFinalizer), 'cancelIntentOf')
      .mockRejectedValueOnce(new Error('the provider timed out'));
    const id = `test-retried-${randomUUID()}`;
    await jobs.add(JobName.CancelPaymentIntent, { orderId }, { jobId: id });
    // (its line comes with the worker's 'failed' event, a moment after Redis records the attempt:
    // waited for itself)
    const line = `payments job ${JobName.CancelPaymentIntent} ${id} failed (attempt 1 of 8): the provider timed out; retried`;
    await waitFor("the first attempt's warning", () =>
      warnings.mock.calls.some(([fields, message]) => message === line && fields.jobId === id),
    );
    await (await jobs.find(JobName.CancelPaymentIntent, id))?.remove().catch(() => undefined);
    cancel.mockRestore();
    warnings.mockRestore();
  });

  it('the session purge takes the tombstones of sessions deleted with their account past the retention, not newer ones', async () => {
    const [old, recent] = [randomUUID(), randomUUID()];
    await t.db.pool.query(
      `INSERT INTO deleted_sessions (family_id, deleted_at)
       VALUES ($1, now() - interval '40 days'), ($2, now() - interval '1 day')`,
      [old, recent],
    );
    const schedule = SCHEDULES.find((s) => s.job === JobName.PurgeRefreshTokens)!;
    const jobs = worker.get(JobQueues);
    const id = `test-run-${randomUUID()}`;
    await jobs.add(schedule.job, schedule.data, { jobId: id });
    await waitFor('the purge to complete', () => jobs.find(schedule.job, id), {
      until: (j) => j?.finishedOn !== undefined,
    });
    const left = await t.db.pool.query<{ family_id: string }>(
      `SELECT family_id FROM deleted_sessions WHERE family_id = ANY($1::uuid[])`,
      [[old, recent]],
    );
    expect(left.rows).toEqual([{ family_id: recent }]);
  });
});
