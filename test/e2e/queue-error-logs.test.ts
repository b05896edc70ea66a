import { INestApplicationContext, Logger } from '@nestjs/common';
import { getQueueToken } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import Redis from 'ioredis';
import { QueueBoardQueues } from '../../src/admin-queues/queue-board-queues';
import { RateLimitedLog } from '../../src/common/logging/rate-limited-log';
import type { AppConfig } from '../../src/config/config';
import { QueueName } from '../../src/queue/queues';
import { createRedisClient } from '../../src/redis/redis.module';
import { PrivateRedis } from '../support/private-redis';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * The worker's queue error lines in a Redis fault (on-call review): a Redis out of memory made a
 * worker's fetch loop, which retries a refused command with no pause, log thousands of lines a
 * second (165k in 40 s); a Redis down made the queues, which had no 'error' listener, write each
 * of their errors to stderr with console.error — multi-line stack traces, not JSON (450 lines in
 * a 30 s outage).
 */
describe('the worker in a Redis fault logs a bounded number of lines', () => {
  let redis: PrivateRedis;
  let admin: Redis;
  let t: TestApp;
  let worker: INestApplicationContext;
  let redisDown = false;

  beforeAll(async () => {
    redis = await PrivateRedis.start();
    admin = new Redis(redis.url);
    t = await bootTestApp({ env: { REDIS_URL: redis.url } });
    worker = await bootTestWorker(t.config);
    // the worker's schedules registered before any fault (a registration Redis refused for
    // memory is not made again: the queues would have none to count)
    await waitFor(
      'the schedules registered',
      () => worker.get<Queue>(getQueueToken(QueueName.Maintenance)).getJobSchedulersCount(),
      { until: (n) => n > 0, timeoutMs: 60_000 },
    );
  }, 90_000);
  afterAll(async () => {
    if (redisDown) await redis.up(); // a failed test must not leave the worker unable to close
    await admin?.config('SET', 'maxmemory', '0').catch(() => undefined);
    await worker?.close();
    await t?.close();
    admin?.disconnect();
    await redis?.down();
  });
  afterEach(() => jest.restoreAllMocks());

  it('Redis out of memory (noeviction) with jobs due: the fetch loop spins, its lines do not (one per queue and message per 10 s)', async () => {
    const queue = worker.get<Queue>(getQueueToken(QueueName.Maintenance));
    await waitFor('the workers running', () => queue.getWorkersCount(), { until: (n) => n > 0 });
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const info = async (section: string, field: string) =>
      Number(new RegExp(`${field}(\\d+)`).exec(String(await admin.info(section)))?.[1] ?? 0);
    const ooms = () => info('errorstats', 'errorstat_OOM:count=');
    const before = await ooms();
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    // jobs that come due while Redis refuses writes: the worker wakes for them and cannot take them
    // (a job of a name no build knows: taken, once it can be, and put back for a minute). Checked
    // untaken once Redis refuses: a stall of this process longer than their delay let the worker
    // take them first, and CI's loop had nothing to spin on (88 refusals in 45 s)
    for (let attempt = 1; ; attempt++) {
      const jobs = [];
      for (let i = 0; i < 3; i++) {
        jobs.push(
          await queue.add('maintenance.queue-error-logs-test', {}, { delay: 1_000 * attempt }),
        );
      }
      // below what it holds, whatever that is (~2.7 MB here; a bare server's ~0.9 MB)
      const used = await info('memory', 'used_memory:');
      await admin.config('SET', 'maxmemory', String(Math.floor(used / 2)));
      const taken = await Promise.all(
        jobs.map((job) => admin.hexists(queue.toKey(job.id!), 'processedOn')),
      );
      if (taken.every((t) => t === 0)) break;
      expect(attempt).toBeLessThan(3);
      await admin.config('SET', 'maxmemory', '0');
    }
    const oomLines = () =>
      warn.mock.calls
        .map((args) => String(args[0]))
        .filter((line) => / worker: OOM command not allowed/.test(line));
    const began = performance.now();
    try {
      // the loop spinning: refusals by the thousand, each one an error the worker heard, a hundred
      // and more for each line it wrote (counted, not slept for; how fast the loop spins is the
      // machine's: 2,813 in 20 s on a loaded CI machine, over 1,000 in under 2 s on an idle one)
      await waitFor('the fetch loop spinning against OOM', async () => (await ooms()) - before, {
        until: (n) => n > Math.max(1_000, 100 * oomLines().length),
        timeoutMs: 45_000,
      });
      const refused = (await ooms()) - before;
      const lines = oomLines();
      expect(lines.length).toBeGreaterThan(0);
      // per queue and message (BullMQ's two scripts): its first line, then one a 10 s window
      const windows = 1 + Math.floor((performance.now() - began) / 10_000);
      expect(lines.length).toBeLessThanOrEqual(10 * (windows + 1));
      expect(refused).toBeGreaterThan(100 * lines.length);
    } finally {
      await admin.config('SET', 'maxmemory', '0');
    }
  }, 75_000);

  it("Redis down: the queues' errors are warning lines of the log, bounded, never console.error's stack traces", async () => {
    const queue = worker.get<Queue>(getQueueToken(QueueName.Maintenance));
    // the schedulers registered (each queue's job scheduler shares its connection and forwards
    // its errors to the queue)
    await waitFor('the schedules registered', () => queue.getJobSchedulersCount(), {
      until: (n) => n > 0,
    });
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const stderr = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    await redis.down();
    redisDown = true;
    const queueLines = () =>
      warn.mock.calls.map((args) => String(args[0])).filter((line) => / queue: /.test(line));
    // the errors the queues heard (each one logged or held back): waited for by count, not time
    const heard = jest.spyOn(RateLimitedLog.prototype, 'write');
    await waitFor('the queues to hear three errors each', () => heard.mock.calls.length, {
      until: (n) => n >= 15,
      timeoutMs: 30_000,
    });
    // … and each queue to have said so (a loaded machine heard the others' first: fifteen errors
    // came before the maintenance queue's first line)
    await waitFor('a line from each queue', queueLines, {
      until: (lines) =>
        ['orders', 'payments', 'email', 'catalog', 'maintenance'].every((name) =>
          lines.some((line) => line.startsWith(`${name} queue: `)),
        ),
      timeoutMs: 30_000,
    });
    expect(stderr).not.toHaveBeenCalled();
    expect(queueLines()).toContainEqual(
      expect.stringMatching(/^maintenance queue: .*ECONNREFUSED/),
    );
    // five queues, a message or two each (refused; the connection closed), within one 10 s window
    expect(queueLines().length).toBeLessThanOrEqual(15);
    await redis.up();
    redisDown = false;
  }, 60_000);
});

describe("the API's queue board while Redis is down", () => {
  afterEach(() => jest.restoreAllMocks());

  it("writes nothing to stderr once the board has counted the queues' schedulers (their job schedulers hear the shared client's errors)", async () => {
    const redis = await PrivateRedis.start();
    const client = createRedisClient(redis.url, 'queue-board-test');
    client.on('error', () => undefined); // as RedisModule's
    const board = new QueueBoardQueues(client, {
      redis: { keyPrefix: 'queueboardtest' },
    } as AppConfig);
    const stderr = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    let reconnects = 0;
    client.on('reconnecting', () => reconnects++);
    try {
      await new Promise((resolve) => client.once('ready', resolve));
      // what the board's queue list asks of each queue
      for (const queue of board.queues) await queue.getJobSchedulersCount();
      await redis.down();
      // reconnects that failed, each an error every queue's scheduler heard: counted, not slept for
      await waitFor('the shared client to fail three reconnects', () => reconnects, {
        until: (n) => n >= 3,
      });
      expect(stderr).not.toHaveBeenCalled();
    } finally {
      await board.onApplicationShutdown();
      client.disconnect();
      await redis.down();
    }
  }, 30_000);
});
