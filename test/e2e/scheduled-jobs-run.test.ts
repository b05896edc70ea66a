import type { INestApplicationContext } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { DataSource, getMetadataArgsStorage } from 'typeorm';
import { JobQueues } from '../../src/queue/job-queues';
import { JobName } from '../../src/queue/queues';
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

describe('every scheduled pass runs through its queue', () => {
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
