import type { INestApplicationContext } from '@nestjs/common';
import { JobQueues } from '../../src/queue/job-queues';
import { JOB_QUEUE, JobName } from '../../src/queue/queues';
import { SCHEDULES, SCHEDULES_REVISION, Schedulers } from '../../src/queue/schedulers';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * Redis keeps the job schedulers across deploys. A worker only added the ones it did not find,
 * so a build that changed a pass's interval never got it (the old one ran on), and a pass that
 * was dropped kept making jobs that each failed for good as unknown after an hour of retries.
 */
/**
 * The queue's schedulers by key, with their intervals. BullMQ lists them by id, then reads each
 * one's record: one a check removes in between comes back undefined (a loaded full run read it so
 * while the check dropped a pass) — left out, as it is gone.
 */
async function heldSchedulers(
  queue: ReturnType<JobQueues['queue']>,
): Promise<Record<string, number | undefined>> {
  const listed = (await queue.getJobSchedulers()) as (
    Awaited<ReturnType<typeof queue.getJobSchedulers>>[number] | undefined
  )[];
  return Object.fromEntries(listed.flatMap((j) => (j ? [[j.key, j.every]] : [])));
}

describe('job schedules a new build changed or dropped', () => {
  let t: TestApp;
  let worker: INestApplicationContext | undefined;

  beforeAll(async () => {
    t = await bootTestApp();
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
  });
  // (a test that failed leaves no spy behind: the next one's spyOn would get it, calls and all)
  afterEach(() => jest.restoreAllMocks());

  /**
   * Every schedule of SCHEDULES held as it says and no check running: the boot's check is done (a
   * loaded full run once had it still upserting the queue's other schedules when the spy below
   * was installed, and counted them as this test's check's).
   */
  async function settled(w: INestApplicationContext): Promise<void> {
    const jobs = w.get(JobQueues);
    await waitFor(
      'every schedule registered and no check running',
      async () => {
        for (const s of SCHEDULES) {
          const held = await jobs.queue(JOB_QUEUE[s.job]).getJobScheduler(s.job);
          if (held?.every !== s.everyMs) return false;
        }
        const schedulers: unknown = w.get(Schedulers);
        return (schedulers as { running?: Promise<void> }).running === undefined;
      },
      { until: (done) => done, timeoutMs: 30_000 },
    );
  }

  it('a changed interval replaces the held one, a scheduler no longer scheduled is removed, the rest are left alone', async () => {
    worker = await bootTestWorker(t.config);
    const changed = SCHEDULES.find((s) => s.job === JobName.ReconcileEmails)!;
    const queue = worker.get(JobQueues).queue(JOB_QUEUE[changed.job]);
    const schedulers = () => heldSchedulers(queue);
    await settled(worker);

    // what an older build left in Redis: another interval, and a pass this build no longer has
    await queue.upsertJobScheduler(
      changed.job,
      { every: changed.everyMs * 2 },
      { name: changed.job, data: {} },
    );
    await queue.upsertJobScheduler(
      'maintenance.dropped-pass',
      { every: 60_000 },
      { name: 'maintenance.dropped-pass', data: {} },
    );
    const upserts = jest.spyOn(worker.get(JobQueues), 'schedule');
    // a check (as at a deploy's boot): the queue's connection comes back
    (await queue.client).disconnect(true);
    await waitFor('the schedules as this build says', schedulers, {
      until: (held) =>
        held[changed.job] === changed.everyMs && !('maintenance.dropped-pass' in held),
      // the reconnect's check, or at the latest the next minute's (a loaded full run once saw
      // neither within 15 s of the reconnect)
      timeoutMs: 75_000,
    });
    const held = await schedulers();
    for (const s of SCHEDULES.filter((x) => JOB_QUEUE[x.job] === JOB_QUEUE[changed.job])) {
      expect([s.job, held[s.job]]).toEqual([s.job, s.everyMs]);
    }
    // only the changed one was upserted: the others' next runs are not pushed back at each check
    expect(upserts.mock.calls.map((c) => c[0])).toEqual([changed.job]);
    upserts.mockRestore();
  }, 90_000);

  it.each([
    ['gone', false],
    // (its record kept, its place in the queue's lists lost: a Redis that evicted keys, an
    // operator's DEL of a list — taken for a job still to come, the pass never ran again, across
    // restarts: redis-loss review)
    ["in none of the queue's lists", true],
  ])(
    'a scheduler that no longer makes jobs (its next run long past, that job %s) is registered again',
    async (_what, recordKept) => {
      worker ??= await bootTestWorker(t.config);
      await settled(worker);
      const job = JobName.SweepExpiredReservations;
      const everyMs = SCHEDULES.find((s) => s.job === job)!.everyMs;
      const queue = worker.get(JobQueues).queue(JOB_QUEUE[job]);
      const client = await queue.client;
      // what a refused write of the next job leaves (Redis at maxmemory when the job started): the
      // scheduler still as SCHEDULES says, its next run in the past, and no job for it
      const before = await queue.getJobScheduler(job);
      const lost = `repeat:${job}:${before!.next}`;
      for (const state of ['delayed', 'wait', 'prioritized']) {
        await client.runCommand(
          state === 'wait' ? 'lrem' : 'zrem',
          state === 'wait'
            ? [`${queue.qualifiedName}:wait`, '0', lost]
            : [`${queue.qualifiedName}:${state}`, lost],
        );
      }
      const past = Date.now() - 3 * everyMs - 60_000;
      if (recordKept) {
        await client.runCommand('rename', [
          `${queue.qualifiedName}:${lost}`,
          `${queue.qualifiedName}:repeat:${job}:${past}`,
        ]);
        expect(await (await queue.getJob(`repeat:${job}:${past}`))?.getState()).toBe('unknown');
      } else {
        await client.del(`${queue.qualifiedName}:${lost}`);
        expect(await queue.getJob(lost)).toBeUndefined();
      }
      await client.runCommand('zadd', [`${queue.qualifiedName}:repeat`, String(past), job]);
      expect((await queue.getJobScheduler(job))?.next).toBe(past);
      client.disconnect(true); // a check
      const after = await waitFor(
        'the scheduler to make jobs again',
        () => queue.getJobScheduler(job),
        {
          until: (s) => (s?.next ?? 0) > past,
          timeoutMs: 20_000,
        },
      );
      expect(after?.every).toBe(everyMs);
      expect(await queue.getJob(`repeat:${job}:${after!.next}`)).toBeTruthy();
    },
    60_000,
  );

  it('a newer build (a higher revision recorded) is not undone: this one neither changes, removes nor adds back a pass', async () => {
    worker ??= await bootTestWorker(t.config);
    await settled(worker);
    const changed = SCHEDULES.find((s) => s.job === JobName.ReconcileEmails)!;
    const dropped = SCHEDULES.find((s) => s.job === JobName.PurgeOutbox)!;
    const queue = worker.get(JobQueues).queue(JOB_QUEUE[changed.job]);
    const client = await queue.client;
    const schedulers = () => heldSchedulers(queue);
    // the newer build's doing: another interval for one pass, a pass of its own, one it dropped
    await client.set(`${queue.qualifiedName}:schedules-revision`, String(SCHEDULES_REVISION + 1));
    await queue.upsertJobScheduler(
      changed.job,
      { every: changed.everyMs * 3 },
      { name: changed.job, data: {} },
    );
    await queue.upsertJobScheduler(
      'maintenance.newer-pass',
      { every: 60_000 },
      { name: 'maintenance.newer-pass', data: {} },
    );
    await queue.removeJobScheduler(dropped.job);
    const upserts = jest.spyOn(worker.get(JobQueues), 'schedule');
    // the checks that finished from here on (registerMissing is the check's work)
    const checks = worker.get<Schedulers, { registerMissing: () => Promise<number> }>(Schedulers);
    const original = checks.registerMissing.bind(checks);
    let finished = 0;
    const spy = jest.spyOn(checks, 'registerMissing').mockImplementation(async () => {
      try {
        return await original();
      } finally {
        finished++;
      }
    });
    try {
      (await queue.client).disconnect(true); // a check
      await waitFor('a check after the reconnect', async () => finished, {
        until: (n) => n >= 1,
        timeoutMs: 75_000,
      });
      // nothing is touched: the newer build's interval and pass stand, the pass it dropped is not
      // added back (it would run at once, and the newer build would drop it again, every minute)
      const held = await schedulers();
      expect([held[changed.job], held['maintenance.newer-pass'], held[dropped.job]]).toEqual([
        changed.everyMs * 3,
        60_000,
        undefined,
      ]);
      expect(upserts).not.toHaveBeenCalled(); // (and so no run of the dropped pass was made)
      expect(await client.get(`${queue.qualifiedName}:schedules-revision`)).toBe(
        String(SCHEDULES_REVISION + 1),
      );
    } finally {
      spy.mockRestore();
      upserts.mockRestore();
    }
  }, 90_000);

  it('a rollback: once the newer revision is no longer renewed (no build of it checks in), this build takes over — the dropped pass back, its intervals, the newer pass gone', async () => {
    worker ??= await bootTestWorker(t.config);
    const changed = SCHEDULES.find((s) => s.job === JobName.ReconcileEmails)!;
    const dropped = SCHEDULES.find((s) => s.job === JobName.PurgeOutbox)!;
    const queue = worker.get(JobQueues).queue(JOB_QUEUE[changed.job]);
    const client = await queue.client;
    const revisionKey = `${queue.qualifiedName}:schedules-revision`;
    const schedulers = () => heldSchedulers(queue);
    // a newer build ran (its revision, its interval, its pass, one it dropped) and was rolled back:
    // its revision expires (PX 1 ms: the expiry of REVISION_TTL_MS without its checks)
    await client.set(revisionKey, String(SCHEDULES_REVISION + 1), { PX: 1 });
    await queue.upsertJobScheduler(
      changed.job,
      { every: changed.everyMs * 3 },
      { name: changed.job, data: {} },
    );
    await queue.upsertJobScheduler(
      'maintenance.newer-pass',
      { every: 60_000 },
      { name: 'maintenance.newer-pass', data: {} },
    );
    await queue.removeJobScheduler(dropped.job);
    client.disconnect(true); // a check
    const held = await waitFor('this build to take over', schedulers, {
      until: (h) =>
        h[dropped.job] === dropped.everyMs &&
        h[changed.job] === changed.everyMs &&
        !('maintenance.newer-pass' in h),
      timeoutMs: 75_000,
    });
    expect(held[dropped.job]).toBe(dropped.everyMs);
    // this build's revision recorded, and renewed by its checks (it expires without them)
    expect(await client.get(revisionKey)).toBe(String(SCHEDULES_REVISION));
    expect(await client.runCommand('pttl', [revisionKey])).toBeGreaterThan(0);
  }, 90_000);

  it('a revision that is no number (written by hand, torn) counts as none: this build re-adds a pass Redis lost and records its own', async () => {
    worker ??= await bootTestWorker(t.config);
    const dropped = SCHEDULES.find((s) => s.job === JobName.PurgeOutbox)!;
    const queue = worker.get(JobQueues).queue(JOB_QUEUE[dropped.job]);
    const client = await queue.client;
    const revisionKey = `${queue.qualifiedName}:schedules-revision`;
    // (`1e3`: a number to Lua's tonumber, none to the check — both must read it alike)
    for (const odd of ['v2-final', '1e3']) {
      await client.set(revisionKey, odd); // (no TTL either)
      await queue.removeJobScheduler(dropped.job);
      (await queue.client).disconnect(true); // a check
      await waitFor(`the lost pass back (${odd})`, () => heldSchedulers(queue), {
        until: (h) => h[dropped.job] === dropped.everyMs,
        timeoutMs: 75_000,
      });
      expect(
        await waitFor(`the revision recorded (${odd})`, () => client.get(revisionKey), {
          until: (v) => v === String(SCHEDULES_REVISION),
        }),
      ).toBe(String(SCHEDULES_REVISION));
      expect(await client.runCommand('pttl', [revisionKey])).toBeGreaterThan(0);
    }
  }, 90_000);
});
