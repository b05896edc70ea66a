import { WorkerHost } from '@nestjs/bullmq';
import type { DiscoveryService } from '@nestjs/core';
import { Job, Queue, Worker } from 'bullmq';
import { randomBytes } from 'node:crypto';
import { loadConfig } from '../../src/config/config';
import { WorkerDrain } from '../../src/queue/worker-drain';
import { waitFor } from '../support/wait-for';

class Host extends WorkerHost {
  process(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * The worker's drain on shutdown, with real BullMQ workers on the real Redis: a running job is
 * waited for; a stuck one for SHUTDOWN_TIMEOUT_MS, then the worker is closed without it — and
 * @nestjs/bullmq's own close() in the next shutdown hook no longer waits on it (BullMQ hands
 * every close() the first one's promise: a close() that waited let close(true) wait too).
 */
describe('WorkerDrain with BullMQ', () => {
  const config = loadConfig({
    NODE_ENV: 'development',
    SHUTDOWN_TIMEOUT_MS: '300',
    DATABASE_POOL_WAIT_MS: '100',
  });
  const connection = { url: config.redis.url };
  const prefix = `drain${randomBytes(3).toString('hex')}`;
  const opened: { close(): Promise<void> }[] = [];

  afterAll(async () => {
    for (const o of opened) await o.close().catch(() => undefined);
  });

  async function workerWith(name: string, work: (job: Job) => Promise<void>) {
    const queue = new Queue(name, { connection, prefix });
    const worker = new Worker(name, work, { connection, prefix });
    opened.push(queue);
    const host = new Host();
    Object.assign(host, { _worker: worker });
    const drain = new WorkerDrain(
      { getProviders: () => [{ instance: host }] } as unknown as DiscoveryService,
      config,
    );
    return { queue, worker, drain };
  }

  it('waits for a running job to finish, then closes', async () => {
    let finished = false;
    const { queue, worker, drain } = await workerWith('quick', async () => {
      await new Promise((r) => setTimeout(r, 150));
      finished = true;
    });
    const job = await queue.add('j', {});
    await waitFor('the job to run', () => job.getState(), {
      until: (s) => s === 'active',
      intervalMs: 10,
    });
    await drain.beforeApplicationShutdown();
    expect(finished).toBe(true);
    expect(await job.getState()).toBe('completed');
    expect(worker.closing).toBeDefined();
    await worker.close();
  });

  it('a stuck job is given up after SHUTDOWN_TIMEOUT_MS; the worker is closed and a later close() returns at once', async () => {
    const { queue, worker, drain } = await workerWith(
      'stuck',
      () => new Promise<void>(() => undefined),
    );
    const job = await queue.add('j', {});
    await waitFor('the job to run', () => job.getState(), {
      until: (s) => s === 'active',
      intervalMs: 10,
    });
    const startedAt = performance.now();
    await drain.beforeApplicationShutdown();
    // (300 ms, not the stuck job's forever: bounds with room for a stall of this process)
    expect(performance.now() - startedAt).toBeLessThan(4_000);
    const again = performance.now();
    await worker.close(); // what @nestjs/bullmq's shutdown hook does next
    expect(performance.now() - again).toBeLessThan(3_000);
    expect(worker.closing).toBeDefined();
    // the job stays active (its lock lapses; BullMQ's stalled check hands it to another worker)
    expect(await job.getState()).toBe('active');
  });
});
